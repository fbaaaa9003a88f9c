package io.lagoon.examples.webflux;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.ConnectionPool;
import io.lagoon.PoolStats;
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
@AutoConfigureWebTestClient
class WebfluxExampleApplicationTest {

  @Autowired WebTestClient http;
  @Autowired ConnectionFactory connectionFactory;
  @Autowired LagoonPool lagoon;
  @LocalServerPort int port;

  @Test
  void theConnectionFactoryBeanIsLagoonsPool() {
    // Spring Boot wraps the factory that the URL produced in its OptionsCapableConnectionFactory,
    // which delegates create() to it: that factory must be Lagoon's pool, not r2dbc-pool's.
    assertThat(connectionFactory).isInstanceOf(Wrapped.class);
    assertThat(((Wrapped<?>) connectionFactory).unwrap()).isInstanceOf(ConnectionPool.class);
    assertThat(lagoon.pool()).isSameAs(((Wrapped<?>) connectionFactory).unwrap());
    assertThat(lagoon.pool().name()).isEqualTo("items");
    assertThat(isOnClassPath("io.r2dbc.pool.ConnectionPool")).as("r2dbc-pool").isFalse();
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
    long acquiresBefore = lagoon.pool().stats().acquires();
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
    PoolStats stats = reactor.core.publisher.Mono.fromCallable(() -> lagoon.pool().stats())
        .filter(s -> s.acquired() == 0 && s.pending() == 0)
        .repeatWhenEmpty(ticks -> ticks.delayElements(Duration.ofMillis(10))
            .take(timeout.toMillis() / 10))
        .block(timeout.plusSeconds(1));
    return stats != null ? stats : lagoon.pool().stats();
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
