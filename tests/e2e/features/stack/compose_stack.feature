Feature: The Compose stack, in containers
  docker-compose.yml's distributed stack (MariaDB, Redis, Mosquitto, two api replicas, a worker
  and the agent) runs from the images `make images` built, brought up with
  `docker compose up -d --wait`. These scenarios act on its containers with `docker compose`
  and read through the api replicas' published ports; each has a tenant of its own as "the
  default tenant". They run in order: the last ones take the stack down.

  Scenario: The agent container's host metrics are queryable
    Then within 60 seconds the stack's tenant "default" has "cpu.usage" samples of the last minute from the agent

  Scenario: A sample published to the Mosquitto container reaches the open chart through the bridge
    Given I am logged in with the stack's tenant "default"
    And a device of the stack's tenant "default" has published a value of a new metric to the Mosquitto container
    And I have a live chart of that metric open in the explorer
    When a device of the stack's tenant "default" publishes a value of that metric to the Mosquitto container
    Then within 2 seconds the chart's newest point is that sample

  Scenario: A sample ingested through one api replica reaches a live stream opened on the other
    Given a live stream of "replica.check" is open on api replica 2
    When the default tenant sends a sample of "replica.check" with value 7 through api replica 1
    Then within 2 seconds the stream on api replica 2 receives that sample

  Scenario: Killing the worker during acknowledged ingest loses no sample and stores none twice
    Given acknowledged bulk ingest of "worker.kill" runs through both api replicas
    When the "worker" container is killed with SIGKILL and started again
    And the ingest stops after 5 more seconds
    Then every acknowledged sample of "worker.kill" is stored exactly once

  Scenario: Restarting MariaDB during acknowledged ingest loses no sample and stores none twice
    Given acknowledged bulk ingest of "mariadb.restart" runs through both api replicas
    When the "mariadb" container is restarted
    And the ingest stops after 5 more seconds
    Then every acknowledged sample of "mariadb.restart" is stored exactly once

  Scenario: Containers that cannot do their work turn unhealthy, and healthy again once they can
    When the "mariadb" container is stopped and the "agent" container's process is suspended
    Then within 120 seconds the "api", "worker" and "agent" containers are unhealthy
    When the "mariadb" container is started and the "agent" container's process is resumed
    Then within 120 seconds every container of the stack is healthy

  Scenario: Taking the stack down and up again keeps tenants, tokens, rules and samples
    Given the default tenant has sent 3 samples of "persist.check" for host "web-1" in the last minute
    And the default tenant has a rule "persist-rule" on "persist.check"
    When the stack is taken down and brought up again
    Then the default tenant still reads 3 samples of "persist.check"
    And the default tenant still has the rule "persist-rule"

  Scenario: The embedded profile runs the single binary with its data on a named volume
    When the stack is taken down and the embedded profile is brought up
    And the admin creates the tenant "embedded" on the embedded server and it sends 2 samples of "embedded.check"
    And the embedded container is recreated
    Then the tenant "embedded" still reads 2 samples of "embedded.check" on the embedded server
