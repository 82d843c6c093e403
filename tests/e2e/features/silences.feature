Feature: Silences
  A tenant's admin silences a firing alert from the alert list of the dashboard: the silence
  form opens with the alert's rule and labels as matchers, the admin keeps the ones that matter,
  and the alert is marked silenced until the silence is expired on the silences page.

  Background:
    Given the default tenant has the critical alert rule "db-errors-high" on "db.errors" for host "db-1" above 5
    And the default tenant has sent a sample of "db.errors" with value 50 for host "db-1"
    And I am logged in with the default tenant's token

  Scenario: An admin silences a firing alert from the alert list and expires the silence
    When I open the alerts page
    Then the alert "db-errors-high" of host "db-1" is firing and not marked silenced
    When I silence the alert "db-errors-high" of host "db-1"
    Then the silence form has the matchers "alertname=db-errors-high, host=db-1, team=secret-team"
    When I remove the matcher "team"
    And I create the silence for "2h" with the comment "replacing a disk" by "ops@example.com"
    Then the silences page lists 1 active silence of "alertname=db-errors-high, host=db-1" that ends in 2h, "replacing a disk" by "ops@example.com"
    And the server lists 1 silence, "active"
    When I open the alerts page
    Then the alert "db-errors-high" of host "db-1" is firing and marked silenced
    When I open the silences page
    And I expire the silence of "alertname=db-errors-high, host=db-1"
    Then the silences page lists no active silence and 1 expired silence of "alertname=db-errors-high, host=db-1"
    And the server lists 1 silence, "expired"
    When I open the alerts page
    Then the alert "db-errors-high" of host "db-1" is firing and not marked silenced
