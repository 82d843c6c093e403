Feature: Saved dashboards
  A dashboard is a named list of panels, each a chart of one metric. Saving stores it on the
  server, so it is there again after a reload.

  Background:
    Given the default tenant has sent 3 samples of "cpu.usage" for host "web-1" in the last minute
    And I am logged in with the default tenant's token

  Scenario: A saved dashboard with a panel survives a reload
    When I create the dashboard "Web servers"
    Then I am on the dashboard "web-servers"
    When I add a panel "CPU busy" of the metric "cpu.usage" with unit "%"
    Then the dashboard shows unsaved changes
    And the panel "CPU busy" shows 3 points
    When I save the dashboard
    Then the dashboard has no unsaved changes
    When I reload the page
    Then the dashboard "web-servers" has exactly 1 panel
    And the panel "CPU busy" shows 3 points
    When I go to the list of dashboards
    Then the list shows the dashboard "web-servers" with 1 panel
