package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.Await;
import io.lagoon.testing.Backends;
import io.lagoon.testing.PostgresSupport;
import io.lagoon.testing.Sql;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/** The core pool against a real PostgreSQL (found as described in PostgresSupport). */
class PostgresPoolTest {

  @Test
  void fiveHundredConcurrentCallsThroughAPoolOfTenNeverUseMoreThanTenBackends() {
    String app = Backends.marker("it");
    ConnectionPool pool = ConnectionPool.builder(PostgresSupport.connectionFactory(app))
        .maxSize(10).poolName("pg-burst").build();
    Backends backends = Backends.connect();
    Backends.Watch sampling = Backends.watchMax(app, Duration.ofMillis(5));
    try {
      Long ok = Flux.range(0, 500)
          .flatMap(i -> pool.withConnection(c ->
              Sql.updates(c, "SELECT pg_sleep(0.005)").then(Mono.just(1))), 500)
          .count()
          .block(Duration.ofSeconds(60));
      assertThat(ok).isEqualTo(500);
      sampling.close();
      assertThat(backends.count(app)).isLessThanOrEqualTo(10);
      sampling.assertHealthy();
      assertThat(sampling.max()).as("backends seen while 500 calls ran").isBetween(1, 10);
      PoolStats s = pool.stats();
      assertThat(s.acquires()).isGreaterThanOrEqualTo(500);
      assertThat(s.acquired()).isZero();
      assertThat(s.pending()).isZero();
      assertThat(s.created()).isLessThanOrEqualTo(10);

      pool.closeGracefully(Duration.ofSeconds(5)).block(Duration.ofSeconds(10));
      // The server ends a backend shortly after its client disconnects: poll until it has.
      backends.awaitCount(app, 0, Await.BOUND);
    } finally {
      sampling.close();
      pool.dispose();
      backends.close();
    }
  }
}
