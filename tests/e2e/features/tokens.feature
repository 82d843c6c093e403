Feature: Tokens
  A tenant's admin manages the tenant's tokens in the dashboard: a new token's secret is shown
  once, and a revoked token stops working at once, on the real server.

  Scenario: A token made in the dashboard works until it is revoked there
    Given I am logged in with the default tenant's token
    When I open the tokens page
    Then the tokens page lists 1 token, marked as this session's
    When I create a token with the scope "ingest" that expires after "30 days"
    Then the new token's secret is shown once
    And the new token can send a sample of "tokens.probe"
    And the tokens page lists 2 tokens
    When I revoke the new token
    Then the tokens page lists 1 token, marked as this session's
    And the new token is refused within a second
