Feature: The live stream recovers after a server restart
  When the server goes away, the header says "reconnecting"; when it is back on the same
  address, the stream reopens by itself, the header says "live" again, and new samples reach
  the chart that stayed open — no reload.

  Background:
    Given the default tenant has sent 3 samples of "cpu.usage" for host "web-1" in the last minute
    And I am logged in with the default tenant's token
    And I have a live chart of "cpu.usage" open in the explorer
    And the live indicator shows "live"

  Scenario: The server restarts
    When the server restarts on the same address with the same data
    Then the live indicator went to "reconnecting" and then back to "live"
    When the default tenant sends a sample of "cpu.usage" with value 42 for host "web-1"
    Then within 1 second the chart's newest point is that sample
    And the chart shows 4 points
    And the page was not reloaded

  Scenario: The server crashes and is started again
    When the server is killed and started again on the same address with the same data
    Then the live indicator went to "reconnecting" and then back to "live"
    When the default tenant sends a sample of "cpu.usage" with value 43 for host "web-1"
    Then within 1 second the chart's newest point is that sample
    And the chart shows 4 points
    And the page was not reloaded

  Scenario: Samples committed while the dashboard was cut off reach the chart
    The server restarts twice while the browser cannot reach the stream: the sample sent in
    between is in no live buffer any more, so it comes from storage when the stream resumes.
    When the browser can no longer reach the live stream
    And the server is killed and started again on the same address with the same data
    And the default tenant sends a sample of "cpu.usage" with value 50 for host "web-1"
    And the server is killed and started again on the same address with the same data
    And the default tenant sends a sample of "cpu.usage" with value 51 for host "web-1"
    And the browser can reach the live stream again
    Then the live indicator went to "reconnecting" and then back to "live"
    And the chart's newest point is that sample
    And the chart shows 5 points
    And the page was not reloaded
