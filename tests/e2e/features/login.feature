Feature: Logging in
  The dashboard exchanges a tenant token for a session cookie. A refused token is explained
  with the server's own words, and the user stays where they are.

  Scenario: A wrong token is refused with the server's explanation, and nothing navigates
    Given I have opened the login page
    When I log in with the token "mdt_this-is-not-a-real-token"
    Then the login form shows the error "Invalid token: check that you copied the whole token"
    And I am still on the login page
    And the page did not navigate
    And no session cookie was set

  Scenario: A visitor who follows a link logs in and lands on that link
    Given the default tenant has sent 3 samples of "cpu.usage" for host "web-1" in the last minute
    When I visit "/explorer?metric=cpu.usage&range=live"
    Then I am on the login page
    When I log in with the default tenant's token
    Then I am on the explorer showing "cpu.usage"
    And the header shows the tenant "default"
    And the live indicator shows "live"
    And the chart shows 3 points

  Scenario: Logging out ends the session
    Given I am logged in with the default tenant's token
    When I log out
    Then I am on the login page
    When I visit "/"
    Then I am on the login page
