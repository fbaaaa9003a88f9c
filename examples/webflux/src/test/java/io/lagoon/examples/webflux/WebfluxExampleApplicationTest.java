package io.lagoon.examples.webflux;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.ConnectionPool;
import io.lagoon.PoolStats;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.Wrapped;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.springframework.beans.factory.annotation.Autowired;
import org.springframework.boot.test.context.SpringBootTest;
import org.springframework.boot.test.context.SpringBootTest.WebEnvironment;
import org.springframework.boot.test.web.server.LocalServerPort;
import org.springframework.boot.webtestclient.autoconfigure.AutoConfigureWebTestClient;
import org.springframework.http.HttpStatus;
import org.springframework.test.web.reactive.server.WebTestClient;
import org.springframework.web.reactive.function.client.WebClient;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Drives the application over HTTP, on a random port, against the default in-memory H2 database
 * (or PostgreSQL with {@code -Dspring.profiles.active=postgres}).
 */
@SpringBootTest(webEnvironment = WebEnvironment.RANDOM_PORT)
@AutoConfigureWebTestClient(timeout = "30s") // a cold first request on a busy 2-core machine
class WebfluxExampleApplicationTest {

  @Autowired WebTestClient http;
  @Autowired ConnectionFactory connectionFactory;
  @Autowired ConnectionPool pool;
  @LocalServerPort int port;

  @Test
  void theConnectionFactoryBeanIsLagoonsPoolConfiguredByTheProperties() {
    // r2dbc-pool is on the class path (spring-boot-starter-data-r2dbc brings it), yet the bean is
    // Lagoon's pool, and nothing between it and the driver is r2dbc-pool.
    assertThat(isOnClassPath("io.r2dbc.pool.ConnectionPool")).as("r2dbc-pool").isTrue();
    assertThat(connectionFactory).isSameAs(pool);
    Object behind = pool.unwrap();
    while (behind instanceof Wrapped<?> wrapped) {
      assertThat(behind.getClass().getName()).doesNotStartWith("io.r2dbc.pool.");
      behind = wrapped.unwrap();
    }
    assertThat(pool.name()).as("lagoon.pool.pool-name").isEqualTo("items");
    assertThat(pool.stats().maxSize()).as("spring.r2dbc.pool.max-size").isEqualTo(10);
  }

  @Test
  void theActuatorShowsThePoolsMetersAndHealth() {
    assertThat(acquiredGauge()).isZero();
    List<Connection> held = Flux.range(0, 3).flatMap(i -> pool.create()).collectList()
        .block(Duration.ofSeconds(10));
    try {
      assertThat(acquiredGauge()).as("while three connections are held").isEqualTo(3.0);
    } finally {
      Flux.fromIterable(held).flatMap(Connection::close).then().block(Duration.ofSeconds(10));
    }
    assertThat(acquiredGauge()).isZero();

    http.get().uri("/actuator/health")
        .exchange()
        .expectStatus().isOk()
        .expectBody()
        .jsonPath("$.status").isEqualTo("UP")
        .jsonPath("$.components.r2dbc.status").isEqualTo("UP")
        .jsonPath("$.components.r2dbc.details.pool").isEqualTo("items")
        .jsonPath("$.components.r2dbc.details.maxSize").isEqualTo(10);
  }

  /** {@code /actuator/metrics/r2dbc.pool.acquired}, tagged with the pool's name. */
  private double acquiredGauge() {
    Map<?, ?> body = http.get().uri("/actuator/metrics/r2dbc.pool.acquired?tag=name:items")
        .exchange()
        .expectStatus().isOk()
        .expectBody(Map.class).returnResult().getResponseBody();
    assertThat(body).isNotNull();
    List<?> measurements = (List<?>) body.get("measurements");
    return ((Number) ((Map<?, ?>) measurements.get(0)).get("value")).doubleValue();
  }

  @Test
  void createsListsAndGetsItems() {
    Item created = http.post().uri("/items")
        .bodyValue(Map.of("name", "lantern", "quantity", 3))
        .exchange()
        .expectStatus().isCreated()
        .expectHeader().value("Location", location -> assertThat(location).startsWith("/items/"))
        .expectBody(Item.class).returnResult().getResponseBody();
    assertThat(created).isNotNull();
    assertThat(created.name()).isEqualTo("lantern");
    assertThat(created.quantity()).isEqualTo(3);
    assertThat(created.createdAt()).isNotNull();

    http.get().uri("/items/{id}", created.id())
        .exchange()
        .expectStatus().isOk()
        .expectBody(Item.class).isEqualTo(created);

    List<Item> all = http.get().uri("/items")
        .exchange()
        .expectStatus().isOk()
        .expectBodyList(Item.class).returnResult().getResponseBody();
    assertThat(all).contains(created);
  }

  @Test
  void answers404ForAMissingItemAnd400ForABadOne() {
    http.get().uri("/items/{id}", Long.MAX_VALUE)
        .exchange()
        .expectStatus().isNotFound()
        .expectBody().jsonPath("$.message").isEqualTo("no item " + Long.MAX_VALUE);
    http.post().uri("/items")
        .bodyValue(Map.of("name", " "))
        .exchange()
        .expectStatus().isBadRequest()
        .expectBody().jsonPath("$.message").isEqualTo("name must have 1 to 100 characters");
    http.post().uri("/items")
        .bodyValue(Map.of("name", "debt", "quantity", -1))
        .exchange()
        .expectStatus().isBadRequest();
  }

  @Test
  void servesABurstOfConcurrentRequestsAndReturnsEveryConnection() {
    long acquiresBefore = pool.stats().acquires();
    WebClient client = WebClient.create("http://127.0.0.1:" + port);
    int requests = 100;

    List<HttpStatus> statuses = Flux.range(0, requests)
        .flatMap(i -> i % 2 == 0
            ? status(client.post().uri("/items").bodyValue(Map.of("name", "burst-" + i)))
            : status(client.get().uri("/items")), requests)
        .collectList()
        .block(Duration.ofSeconds(60));

    assertThat(statuses).hasSize(requests)
        .filteredOn(s -> s == HttpStatus.CREATED).hasSize(requests / 2);
    assertThat(statuses).filteredOn(s -> s == HttpStatus.OK).hasSize(requests / 2);

    // Every response has been sent, but a connection goes back to the pool when its close()
    // completes, which may come a moment after the last byte of the response.
    PoolStats stats = awaitIdle(Duration.ofSeconds(10));
    assertThat(stats.acquired()).as("connections still lent: %s", stats).isZero();
    assertThat(stats.pending()).as("acquires still waiting: %s", stats).isZero();
    assertThat(stats.allocated()).isLessThanOrEqualTo(stats.maxSize());
    assertThat(stats.acquires() - acquiresBefore).isGreaterThanOrEqualTo(requests);
    assertThat(stats.timeouts() + stats.rejections() + stats.createFailures()).isZero();

    http.get().uri("/pool/stats")
        .exchange()
        .expectStatus().isOk()
        .expectBody()
        .jsonPath("$.poolName").isEqualTo("items")
        .jsonPath("$.maxSize").isEqualTo(10)
        .jsonPath("$.acquired").isEqualTo(0)
        .jsonPath("$.pending").isEqualTo(0);
  }

  private static Mono<HttpStatus> status(WebClient.RequestHeadersSpec<?> request) {
    return request.exchangeToMono(response -> response.releaseBody()
        .thenReturn(HttpStatus.valueOf(response.statusCode().value())));
  }

  /** Waits until the condition holds (not for a fixed time), re-reading stats every 10 ms. */
  private PoolStats awaitIdle(Duration timeout) {
    PoolStats stats = reactor.core.publisher.Mono.fromCallable(() -> pool.stats())
        .filter(s -> s.acquired() == 0 && s.pending() == 0)
        .repeatWhenEmpty(ticks -> ticks.delayElements(Duration.ofMillis(10))
            .take(timeout.toMillis() / 10))
        .block(timeout.plusSeconds(1));
    return stats != null ? stats : pool.stats();
  }

  private static boolean isOnClassPath(String className) {
    try {
      Class.forName(className, false, WebfluxExampleApplicationTest.class.getClassLoader());
      return true;
    } catch (ClassNotFoundException e) {
      return false;
    }
  }
}
