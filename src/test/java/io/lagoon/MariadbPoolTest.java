package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.MariadbSupport;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import java.time.Duration;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.LongStream;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;

/**
 * Lagoon over the MariaDB R2DBC driver, found through an {@code r2dbc:lagoon:mariadb://} URL. Needs
 * a MariaDB server: see {@link MariadbSupport} for how one is found.
 */
class MariadbPoolTest {

  private static final int QUERIES = 200;
  private static final int POOL_SIZE = 5;

  @Test
  void burstOfConcurrentQueriesThroughASmallPool() {
    System.out.println("[MariadbPoolTest] using " + MariadbSupport.describe());
    String url = MariadbSupport.lagoonUrl();
    url += (url.contains("?") ? "&" : "?") + "maxSize=" + POOL_SIZE + "&maxAcquireTime=60s";

    ConnectionFactory factory = ConnectionFactories.get(url);
    assertThat(factory).isInstanceOf(ConnectionPool.class);
    ConnectionPool pool = (ConnectionPool) factory;
    try {
      assertThat(pool.getMetadata().getName()).containsIgnoringCase("MariaDB");
      // warmup() completes after the background fill: afterwards every connection is settled
      assertThat(pool.warmup().block(Duration.ofSeconds(30))).isNotNull();

      List<Long> results = Flux.range(1, QUERIES)
          .flatMap(i -> pool.withConnection(c -> Flux.from(c.createStatement("SELECT " + i)
                  .execute())
              .concatMap(r -> r.map((row, meta) -> row.get(0, Long.class)))), QUERIES)
          .collectList()
          .block(Duration.ofSeconds(120));

      assertThat(results).containsExactlyInAnyOrderElementsOf(
          LongStream.rangeClosed(1, QUERIES).boxed().collect(Collectors.toList()));

      // withConnection completes after its connection is back: no waiting needed
      PoolStats stats = pool.stats();
      assertThat(stats.acquired()).as("lent connections in %s", stats).isZero();
      assertThat(stats.pending()).as("waiters in %s", stats).isZero();
      assertThat(stats.idle()).as("idle connections in %s", stats).isEqualTo(stats.allocated());
      assertThat(stats.allocated()).as("allocated in %s", stats).isBetween(1, POOL_SIZE);
      assertThat(stats.maxSize()).isEqualTo(POOL_SIZE);
      assertThat(stats.acquires()).as("acquires in %s", stats).isGreaterThanOrEqualTo(QUERIES);
      assertThat(stats.timeouts()).isZero();
      assertThat(stats.rejections()).isZero();
      assertThat(stats.createFailures()).isZero();
      assertThat(stats.created()).as("created in %s", stats).isLessThanOrEqualTo(POOL_SIZE);
    } finally {
      pool.close().block(Duration.ofSeconds(30));
    }
    assertThat(pool.isDisposed()).isTrue();
    PoolStats closed = pool.stats();
    assertThat(closed.allocated()).as("allocated after close in %s", closed).isZero();
    assertThat(closed.closed()).as("closed in %s", closed).isEqualTo(closed.created());
  }
}
