package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.PostgresSupport;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.Option;
import java.time.Duration;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/** The core pool against a real PostgreSQL (found as described in PostgresSupport). */
class PostgresPoolTest {

  private static ConnectionFactory driverWithApplicationName(String applicationName) {
    PostgresSupport.connectionFactory(); // fails with instructions when no PostgreSQL is found
    ConnectionFactoryOptions options = ConnectionFactoryOptions.parse(PostgresSupport.r2dbcUrl())
        .mutate().option(Option.valueOf("applicationName"), applicationName).build();
    return ConnectionFactories.get(options);
  }

  private static Mono<Long> backends(Connection monitor, String applicationName) {
    return Flux.from(monitor.createStatement(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
        .bind("$1", applicationName).execute())
        .flatMap(r -> r.map((row, meta) -> row.get(0, Long.class)))
        .single();
  }

  @Test
  void fiveHundredConcurrentCallsThroughAPoolOfTenNeverUseMoreThanTenBackends() {
    String app = "lagoon-it-" + UUID.randomUUID().toString().substring(0, 8);
    ConnectionPool pool = ConnectionPool.builder(driverWithApplicationName(app))
        .maxSize(10).poolName("pg-burst").build();
    Connection monitor = Mono.from(PostgresSupport.connectionFactory().create()).block();
    AtomicLong maxSeen = new AtomicLong();
    Disposable sampling = Flux.interval(Duration.ofMillis(5)).onBackpressureDrop()
        .concatMap(tick -> backends(monitor, app))
        .subscribe(n -> maxSeen.accumulateAndGet(n, Math::max));
    try {
      Long ok = Flux.range(0, 500)
          .flatMap(i -> pool.withConnection(c ->
              Flux.from(c.createStatement("SELECT pg_sleep(0.005)").execute())
                  .flatMap(r -> r.getRowsUpdated())
                  .then(Mono.just(1))), 500)
          .count()
          .block(Duration.ofSeconds(60));
      assertThat(ok).isEqualTo(500);
      sampling.dispose();
      assertThat(backends(monitor, app).block()).isLessThanOrEqualTo(10);
      assertThat(maxSeen.get()).as("backends seen while 500 calls ran").isBetween(1L, 10L);
      PoolStats s = pool.stats();
      assertThat(s.acquires()).isGreaterThanOrEqualTo(500);
      assertThat(s.acquired()).isZero();
      assertThat(s.pending()).isZero();
      assertThat(s.created()).isLessThanOrEqualTo(10);

      pool.closeGracefully(Duration.ofSeconds(5)).block(Duration.ofSeconds(10));
      // The server ends a backend shortly after its client disconnects: poll until it has.
      Long after = backends(monitor, app)
          .repeatWhenEmpty(r -> r)
          .flatMap(n -> n == 0 ? Mono.just(n) : Mono.error(new IllegalStateException(n + " left")))
          .retryWhen(reactor.util.retry.Retry.fixedDelay(100, Duration.ofMillis(50)))
          .block(Duration.ofSeconds(10));
      assertThat(after).isZero();
    } finally {
      sampling.dispose();
      pool.dispose();
      Mono.from(monitor.close()).block();
    }
  }
}
