Feature: Saved dashboards
  A dashboard is a named grid of panels (time series, stat, gauge, top-N, alert list, text), each
  with its queries, variables and a time range. Saving stores it on the server, so it is there
  again after a reload, in the same places.

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

  Scenario: Build a dashboard by dragging and resizing panels of three widget types
    When I create the dashboard "Builder"
    And I add a "Time series" panel "CPU chart" of the metric "cpu.usage"
    And I add a "Stat" panel "CPU now" of the metric "cpu.usage"
    And I add a text panel "Notes" saying "**Hello** from the builder"
    Then the panel "Notes" shows "Hello" in bold
    And the stat "CPU now" shows 20
    When I drag the panel "Notes" 6 columns to the right with the mouse
    Then the panel "Notes" starts at column 6
    When I resize the panel "CPU now" by 3 columns and 2 rows with the mouse
    Then the panel "CPU now" is 6 columns wide and 6 rows high
    And the dashboard shows unsaved changes
    When I save the dashboard
    Then the dashboard has no unsaved changes
    When I reload the page
    Then the dashboard "builder" has exactly 3 panels
    And every panel has the place it had before the reload
    And the server has the dashboard "builder" with the same places

  Scenario: A variable changes every panel
    Given the default tenant has sent 2 samples of "cpu.usage" for host "web-2" in the last minute
    When I create the dashboard "Hosts"
    And I add the variable "host" with the values of the label "host" of "cpu.usage"
    And I add a "Time series" panel "CPU chart" of the metric "cpu.usage" with host "$host"
    And I add a "Stat" panel "CPU now" of the metric "cpu.usage" with host "$host"
    Then the variable "host" is "web-1"
    And the panel "CPU chart" shows 3 points
    And the stat "CPU now" shows 20
    When I choose "web-2" for the variable "host"
    Then the address has "var-host=web-2"
    And every panel queries host "web-2"
    And the panel "CPU chart" shows 2 points
    And the stat "CPU now" shows 15
    When I save the dashboard
    Then the dashboard has no unsaved changes
    When I reload the page
    Then the variable "host" is "web-2"
    And the panel "CPU chart" shows 2 points

  Scenario: The Host overview template, and a dashboard imported from JSON
    Given the default tenant has sent 2 samples of the counter "cpu.seconds_total" with mode "user" for host "web-1" in the last minute
    When I go to the list of dashboards
    And I create the Host overview dashboard
    Then I am on the dashboard "host-overview"
    And the variable "host" is "web-1"
    And the panel "CPU busy per core" shows 3 points
    And the panel "CPU time by mode" draws points
    And the panel "CPU time by mode" shows its PromQL for host "web-1"
    When I go to the list of dashboards
    And I import the JSON of a dashboard "bad" whose first panel has the type "pie"
    Then the import is refused naming "panels[0].type"
    When I import the JSON of the Host overview named "hosts-copy"
    Then I am on the dashboard "hosts-copy"
    And the variable "host" is "web-1"

  Scenario: Undo takes back the last change, down to the saved state
    When I create the dashboard "Undo"
    And I add a "Stat" panel "CPU now" of the metric "cpu.usage"
    And I add a "Gauge" panel "CPU gauge" of the metric "cpu.usage"
    Then the dashboard shows unsaved changes
    When I press Control+Z
    Then the dashboard "undo" has the panels "CPU now" and nothing else
    And the dashboard shows unsaved changes
    When I click Undo
    Then the dashboard has no panels and no unsaved changes
