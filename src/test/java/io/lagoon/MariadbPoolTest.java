package io.lagoon;

import static io.lagoon.testing.MariadbSupport.connectionId;
import static io.lagoon.testing.Sql.exec;
import static io.lagoon.testing.Sql.one;
import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.MariadbSupport;
import io.lagoon.testing.Sql;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import java.time.Duration;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.LongStream;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

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
    ConnectionFactory factory = ConnectionFactories.get(
        MariadbSupport.lagoonUrl("maxSize=" + POOL_SIZE + "&maxAcquireTime=60s"));
    assertThat(factory).isInstanceOf(ConnectionPool.class);
    ConnectionPool pool = (ConnectionPool) factory;
    try {
      assertThat(pool.getMetadata().getName()).containsIgnoringCase("MariaDB");
      // warmup() completes after the background fill: afterwards every connection is settled
      assertThat(pool.warmup().block(Duration.ofSeconds(30))).isNotNull();

      List<Long> results = Flux.range(1, QUERIES)
          .flatMap(i -> pool.withConnection(c -> Sql.column(c, "SELECT " + i, Long.class)), QUERIES)
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

  @Test
  void autoCommitSwitchedOffBySqlOrBehindTheHandleIsSwitchedBackAndNoWriteIsLost() {
    String table = "lagoon_ac_" + java.util.UUID.randomUUID().toString().substring(0, 8);
    ConnectionPool pool = (ConnectionPool) ConnectionFactories.get(
        MariadbSupport.lagoonUrl("maxSize=1&initialSize=1"));
    io.r2dbc.spi.Connection setup = pool.create().block(Duration.ofSeconds(10));
    exec(setup, "CREATE TABLE " + table + " (v int) ENGINE=InnoDB");
    Mono.from(setup.close()).block();
    try {
      for (String how : List.of("SET autocommit=0", "unwrap().setAutoCommit(false)")) {
        io.r2dbc.spi.Connection first = pool.create().block(Duration.ofSeconds(10));
        if (how.startsWith("SET")) {
          exec(first, how);
        } else {
          Mono.from(((io.r2dbc.spi.Connection) ((io.r2dbc.spi.Wrapped<?>) first).unwrap())
              .setAutoCommit(false)).block();
        }
        assertThat(first.isAutoCommit()).as(how).isFalse();
        Mono.from(first.close()).block();

        io.r2dbc.spi.Connection next = pool.create().block(Duration.ofSeconds(10));
        assertThat(next.isAutoCommit()).as(how).isTrue();
        exec(next, "INSERT INTO " + table + " VALUES (1)");
        Mono.from(next.close()).block();
      }
      io.r2dbc.spi.Connection check = pool.create().block(Duration.ofSeconds(10));
      assertThat(one(check, "SELECT count(*) FROM " + table, Long.class))
          .as("every borrower's write kept").isEqualTo(2);
      exec(check, "DROP TABLE " + table);
      Mono.from(check.close()).block();
    } finally {
      pool.close().block(Duration.ofSeconds(30));
    }
  }

  @Test
  void aSessionChangedBySqlIsReplacedOnADriverWithoutAResetStatement() {
    ConnectionPool pool = (ConnectionPool) ConnectionFactories.get(
        MariadbSupport.lagoonUrl("maxSize=1&initialSize=1"));
    try {
      io.r2dbc.spi.Connection first = pool.create().block(Duration.ofSeconds(10));
      long id = connectionId(first);
      exec(first, "SET @lagoon_secret = 'borrower one'");
      exec(first, "SET SESSION sql_mode = 'ANSI'");
      Mono.from(first.close()).block();

      io.r2dbc.spi.Connection next = pool.create().block(Duration.ofSeconds(10));
      assertThat(connectionId(next)).isNotEqualTo(id);
      assertThat(one(next, "SELECT @lagoon_secret IS NULL", Long.class))
          .as("the user variable is gone").isEqualTo(1L);
      Mono.from(next.close()).block();

      io.r2dbc.spi.Connection plain = pool.create().block(Duration.ofSeconds(10));
      long kept = connectionId(plain);
      exec(plain, "SELECT 1");
      Mono.from(plain.close()).block();
      io.r2dbc.spi.Connection again = pool.create().block(Duration.ofSeconds(10));
      assertThat(connectionId(again))
          .as("plain queries cost no replacement").isEqualTo(kept);
      Mono.from(again.close()).block();
    } finally {
      pool.close().block(Duration.ofSeconds(30));
    }
  }
}
