package io.lagoon;

import static io.lagoon.testing.MariadbSupport.connectionId;
import static io.lagoon.testing.Sql.exec;
import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.Await;
import io.lagoon.testing.MariadbSupport;
import io.lagoon.testing.Sql;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.R2dbcException;
import io.r2dbc.spi.R2dbcNonTransientResourceException;
import io.r2dbc.spi.Result;
import java.time.Duration;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Ordinary SQL errors keep the connection; only errors that mean it is gone replace it. Against a
 * real MariaDB through r2dbc-mariadb, which raises a killed query and a killed connection under
 * the same SQLSTATE (70100). Only this pool's own connection (by the id it reports) is ever killed.
 */
class MariadbSqlErrorTest {

  private static final Duration T = Duration.ofSeconds(30);

  private final String table = "lagoon_sqlerr_" + UUID.randomUUID().toString().substring(0, 8);
  private Connection monitor;
  private ConnectionPool pool;

  @BeforeEach
  void setUp() {
    monitor = Mono.from(MariadbSupport.connectionFactory().create()).block(T);
    exec(monitor, "CREATE TABLE " + table + " (id int PRIMARY KEY, v int) ENGINE=InnoDB");
    exec(monitor, "INSERT INTO " + table + " VALUES (1, 1)");
    pool = (ConnectionPool) ConnectionFactories.get(
        MariadbSupport.lagoonUrl("maxSize=1&initialSize=1&poolName=mariadb-sql-errors"));
  }

  @AfterEach
  void tearDown() {
    if (pool != null) {
      pool.close().block(T);
    }
    exec(monitor, "DROP TABLE IF EXISTS " + table);
    Mono.from(monitor.close()).block(T);
  }

  /** Runs {@code sql} and returns the error it failed with (failing the test if it did not). */
  private static Mono<R2dbcException> failure(Connection c, String sql) {
    return Flux.defer(() -> c.createStatement(sql).execute())
        .flatMap(Result::getRowsUpdated)
        .then(Mono.<R2dbcException>error(new AssertionError("no error from: " + sql)))
        .onErrorResume(R2dbcException.class, Mono::just);
  }

  /**
   * Borrows the pool's connection, runs {@code sql} on it, checks the error's SQLSTATE and
   * vendor code, returns the connection, and returns the id of the connection it was.
   */
  private long borrowAndFail(String sql, String sqlState, int errorCode) {
    Connection c = pool.create().block(T);
    long id = connectionId(c);
    R2dbcException error = failure(c, sql).block(T);
    assertThat(error.getSqlState()).as("%s", error).isEqualTo(sqlState);
    assertThat(error.getErrorCode()).as("%s", error).isEqualTo(errorCode);
    Mono.from(c.close()).block(T);
    return id;
  }

  private void assertSameConnectionAndNoEviction(long id) {
    Connection c = pool.create().block(T);
    try {
      assertThat(connectionId(c)).as("the same connection").isEqualTo(id);
    } finally {
      Mono.from(c.close()).block(T);
    }
    PoolStats stats = pool.stats();
    assertThat(stats.created()).as("opened in %s", stats).isEqualTo(1);
    assertThat(stats.closed()).as("closed in %s", stats).isZero();
  }

  @Test
  void aSignalledErrorKeepsTheConnection() {
    long id = borrowAndFail("SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'lagoon test'", "45000",
        1644);
    assertSameConnectionAndNoEviction(id);
  }

  @Test
  void aDuplicateKeyKeepsTheConnection() {
    long id = borrowAndFail("INSERT INTO " + table + " VALUES (1, 2)", "23000", 1062);
    assertSameConnectionAndNoEviction(id);
  }

  @Test
  void aSyntaxErrorKeepsTheConnection() {
    long id = borrowAndFail("SELECT FROM WHERE", "42000", 1064);
    assertSameConnectionAndNoEviction(id);
  }

  @Test
  void aLockNotAvailableKeepsTheConnection() {
    Mono.from(monitor.beginTransaction()).block(T);
    long id;
    try {
      exec(monitor, "SELECT v FROM " + table + " WHERE id = 1 FOR UPDATE");
      id = borrowAndFail("SELECT v FROM " + table + " WHERE id = 1 FOR UPDATE NOWAIT", "HY000",
          1205);
    } finally {
      Mono.from(monitor.rollbackTransaction()).block(T);
    }
    assertSameConnectionAndNoEviction(id);
  }

  @Test
  void killQueryKeepsTheConnection() {
    Connection c = pool.create().block(T);
    long id = connectionId(c);
    R2dbcException error = runWhileKilled(c, id, "KILL QUERY " + id);
    assertThat(error.getSqlState()).as("%s", error).isEqualTo("70100");
    assertThat(error.getErrorCode()).as("query interrupted: %s", error).isEqualTo(1317);
    Mono.from(c.close()).block(T);
    assertSameConnectionAndNoEviction(id);
  }

  @Test
  void killConnectionReplacesIt() {
    Connection c = pool.create().block(T);
    long id = connectionId(c);
    R2dbcException error = runWhileKilled(c, id, "KILL CONNECTION " + id);
    assertKilled(error);
    Mono.from(c.close()).block(T);
    assertReplaced(id);
  }

  @Test
  void killConnectionOfALentIdleConnectionReplacesIt() {
    Connection c = pool.create().block(T);
    long id = connectionId(c);
    exec(monitor, "KILL CONNECTION " + id);
    awaitGone(id);
    R2dbcException error = failure(c, "SELECT 1").block(T);
    assertKilled(error);
    Mono.from(c.close()).block(T);
    assertReplaced(id);
  }

  /**
   * The connection's end, as r2dbc-mariadb reports it: killed (70100, 1927), the socket closed
   * (08000), or, once it knows, its own "connection is closed" without a SQLSTATE.
   */
  private static void assertKilled(R2dbcException error) {
    String state = error.getSqlState();
    assertThat(state == null && error instanceof R2dbcNonTransientResourceException
        || state != null && state.startsWith("08")
        || "70100".equals(state) && error.getErrorCode() == 1927)
        .as("connection closed or killed: %s", error).isTrue();
  }

  private void awaitGone(long id) {
    Await.until("connection " + id + " ended",
        () -> count("SELECT COUNT(*) FROM information_schema.processlist WHERE id = " + id) == 0);
  }

  private void assertReplaced(long id) {
    Connection next = pool.create().block(T);
    try {
      assertThat(connectionId(next)).as("a new connection").isNotEqualTo(id);
    } finally {
      Mono.from(next.close()).block(T);
    }
    assertThat(pool.stats().created()).isEqualTo(2);
    Await.until(() -> "the killed connection was closed: " + pool.stats(), Await.BOUND,
        () -> pool.stats().closed() == 1);
  }

  /**
   * Runs a long SLEEP on {@code c} (connection {@code id}); once the server shows it running,
   * {@code kill} runs on the monitor connection. Returns the error the SLEEP failed with.
   */
  private R2dbcException runWhileKilled(Connection c, long id, String kill) {
    CompletableFuture<R2dbcException> sleeper = failure(c, "SELECT SLEEP(30)").toFuture();
    Await.until("the SLEEP runs", () -> count("SELECT COUNT(*) FROM information_schema.processlist"
        + " WHERE id = " + id + " AND info = 'SELECT SLEEP(30)'") == 1);
    exec(monitor, kill);
    return Mono.fromFuture(sleeper).block(T);
  }

  /**
   * A count on the monitor connection, on the test thread ({@link Await} polls there): the monitor
   * is only ever used from it, since r2dbc-mariadb takes a lock per connection to send a command,
   * and a Reactor timer thread waiting for it would be stopped by BlockHound half-way, wedging that
   * lock for good.
   */
  private long count(String sql) {
    return Sql.one(monitor, sql, Long.class);
  }
}
