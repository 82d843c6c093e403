Feature: Ingest → Chart
  A sample sent to the HTTP API shows up on a chart that is already open, within a second,
  without reloading the page: the explorer loads the last 15 minutes once, then appends what
  the live stream brings.

  Background:
    Given the default tenant has sent 3 samples of "cpu.usage" for host "web-1" in the last minute
    And I am logged in with the default tenant's token

  Scenario: A sample sent over HTTP appears on the open live chart within a second
    When I open the explorer
    And I pick the metric "cpu.usage"
    Then the time range is "live"
    And the chart shows 3 points
    When the default tenant sends a sample of "cpu.usage" with value 97.5 for host "web-1"
    Then within 1 second the chart's newest point is that sample
    And the chart shows 4 points
    And the page was not reloaded

  Scenario: A chart filtered on a label only draws the samples that match it
    When I open the explorer at "/explorer?metric=cpu.usage&match=host=web-1&range=live"
    Then the label filter "host" is set to "web-1"
    And the chart shows 3 points
    When the default tenant sends a sample of "cpu.usage" with value 12 for host "web-2"
    And the default tenant sends a sample of "cpu.usage" with value 55 for host "web-1"
    Then within 1 second the chart's newest point is that sample
    And the chart shows 4 points
