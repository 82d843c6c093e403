Feature: Tenant isolation
  A user of one tenant never sees another tenant's metrics: not in the metric list, not on
  the overview, and not on the live stream.

  Background:
    Given the admin has created the tenant "team-b"
    And the default tenant has sent a sample of "secret.a.metric" with value 1 for host "a-host"
    And the tenant "team-b" has sent a sample of "team_b.metric" with value 2 for host "b-host"

  Scenario: Tenant B sees its own metrics and none of tenant A's
    When I log in with the token of the tenant "team-b"
    Then the header shows the tenant "team-b"
    And the overview shows the metric "team_b.metric" for host "b-host"
    And the overview does not show the metric "secret.a.metric"
    And the overview does not show the host "a-host"
    When I open the explorer
    Then the metric list offers "team_b.metric"
    And the metric list does not offer "secret.a.metric"

  Scenario: Tenant A's live samples never reach tenant B's open overview
    Given I am logged in with the token of the tenant "team-b"
    And the overview shows the metric "team_b.metric" for host "b-host"
    When the default tenant sends a sample of "secret.a.live" with value 3 for host "a-host"
    And the tenant "team-b" sends a sample of "team_b.after" with value 4 for host "b-host"
    Then the overview shows the metric "team_b.after" for host "b-host"
    And the overview does not show the metric "secret.a.live"
    And the overview does not show the host "a-host"
