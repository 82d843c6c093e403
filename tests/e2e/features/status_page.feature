Feature: Public status page
  A tenant publishes a status page of chosen components, each following one of its alert rules.
  Anyone opens it without a token or login: each component is green while its rule is quiet and
  red while it fires, the page follows live without a reload, and it shows nothing else of the
  tenant (no tenant name, token, rule, metric, label or value).

  Background:
    Given the default tenant has the critical alert rule "db-errors-high" on "db.errors" for host "db-1" above 5
    And the default tenant has sent a sample of "db.errors" with value 0 for host "db-1"
    And the default tenant has published the status page "acme" titled "Acme status" with the component "Database" of the rule "db-errors-high"

  Scenario: A visitor without a token sees the component turn red when its alert fires and green when it resolves
    When a visitor without a token opens the status page "acme"
    Then the status page is titled "Acme status"
    And the component "Database" is shown "operational" in green
    When the default tenant sends a sample of "db.errors" with value 50 for host "db-1"
    Then the component "Database" is shown "down" in red
    And the status page was not reloaded
    When the default tenant sends a sample of "db.errors" with value 0 for host "db-1"
    Then the component "Database" is shown "operational" in green
    And the status page lists a resolved incident of "Database"
    And today's bar of "Database" is red
    And the status page was not reloaded
    And the visitor sent no token and holds no cookie

  Scenario: The status page shows nothing else of the tenant
    Given the default tenant has sent a sample of "secret.billing.revenue" with value 12345 for host "billing-7"
    When a visitor without a token opens the status page "acme"
    Then the component "Database" is shown "operational" in green
    And the status page shows only the components "Database"
    And nothing of the tenant is on the status page or in its JSON besides the chosen names

  Scenario: The tenant edits its status page in the dashboard and opens the public page
    Given I am logged in with the default tenant's token
    When I open the status pages of the dashboard
    And I add the component "Primary database" of the rule "db-errors-high" to the status page "acme"
    Then the status page "acme" lists the components "Database, Primary database"
    When a visitor without a token opens the status page "acme"
    Then the status page shows only the components "Database, Primary database"
