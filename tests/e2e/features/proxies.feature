Feature: The live stream behind a reverse proxy
  The dashboard is used through nginx, a real process in front of the server. With nginx's
  default proxy settings the stream is live (the server asks nginx not to buffer it). Behind a
  proxy that holds the stream back anyway, or cuts it long before the server's keep-alive, the
  dashboard says so and polls the query API, so charts still move.

  Background:
    Given the default tenant has sent 3 samples of "cpu.usage" for host "web-1" in the last minute
    And I am logged in with the default tenant's token

  Scenario: Live through nginx with its default proxy settings
    Given nginx with its default proxy settings is in front of the server
    When I open "/explorer?metric=cpu.usage&match=host=web-1&range=live" through the proxy
    Then the live indicator shows "live"
    And the chart shows 3 points
    When the default tenant sends a sample of "cpu.usage" with value 61 for host "web-1"
    Then within 1 second the chart's newest point is that sample
    And the chart shows 4 points

  Scenario: Behind a proxy that holds the stream back, the dashboard polls
    Given nginx is in front of the server and buffers the live stream whatever the server asks
    When I open "/explorer?metric=cpu.usage&match=host=web-1&range=live" through the proxy
    Then the chart shows 3 points
    And within 40 seconds the live indicator shows "polling"
    When the default tenant sends a sample of "cpu.usage" with value 62 for host "web-1"
    Then within 12 seconds the chart's newest point is that sample
    And the chart shows 4 points

  Scenario: Behind a proxy that cuts the stream, the dashboard polls
    Given nginx is in front of the server and cuts the live stream after 2 seconds without data
    When I open "/explorer?metric=cpu.usage&match=host=web-1&range=live" through the proxy
    Then the chart shows 3 points
    And within 40 seconds the live indicator shows "polling"
    When the default tenant sends a sample of "cpu.usage" with value 63 for host "web-1"
    Then within 12 seconds the chart's newest point is that sample
    And the chart shows 4 points
