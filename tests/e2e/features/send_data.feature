Feature: Send data
  The dashboard tells a tenant how the tools it already runs send metrics here, with this
  server's address and the tenant filled in, and the blocks work as written.

  Scenario: The send-data blocks name this server and the curl block works as written
    Given I am logged in with the default tenant's token
    When I open the send-data page
    Then it shows the blocks "curl, prometheus, otel, telegraf, mqtt", each naming this server or tenant
    When I run the curl block with the default tenant's token
    Then the overview shows the metric "cpu.usage" for host "web-1"
