package io.lagoon;

import static io.lagoon.testing.Backends.pid;
import static io.lagoon.testing.Sql.exec;
import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.Await;
import io.lagoon.testing.Backends;
import io.lagoon.testing.PostgresSupport;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.R2dbcException;
import io.r2dbc.spi.R2dbcNonTransientResourceException;
import io.r2dbc.spi.Result;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Ordinary SQL errors keep the connection; only errors that mean it is gone replace it. Against a
 * real PostgreSQL through r2dbc-postgresql, which raises most SQL errors as {@link
 * R2dbcNonTransientResourceException}.
 */
class PostgresSqlErrorTest {

  private static final Duration T = Duration.ofSeconds(30);
  /** What r2dbc-postgresql raises as R2dbcNonTransientResourceException among the cases here. */
  private static final Set<String> RAISED_AS_NON_TRANSIENT_RESOURCE_ERRORS =
      Set.of("P0001", "57014", "55P03", "25P02");

  private final String app = "lagoon-sqlerr-" + UUID.randomUUID().toString().substring(0, 8);
  private final String table = "lagoon_sqlerr_" + UUID.randomUUID().toString().substring(0, 8);
  private Backends backends;
  private Connection monitor;
  private ConnectionPool pool;

  @BeforeEach
  void setUp() {
    backends = Backends.connect();
    monitor = backends.monitor();
    exec(monitor, "CREATE TABLE " + table + " (id int PRIMARY KEY, v int)");
    exec(monitor, "INSERT INTO " + table + " VALUES (1, 1)");
    pool = ConnectionPool.builder(PostgresSupport.connectionFactory(app)).maxSize(1).initialSize(1)
        .poolName("pg-sql-errors").build();
  }

  @AfterEach
  void tearDown() {
    if (pool != null) {
      pool.close().block(T);
    }
    exec(monitor, "DROP TABLE IF EXISTS " + table);
    backends.close();
  }

  /** Runs {@code sql} and returns the error it failed with (failing the test if it did not). */
  private static Throwable failure(Connection c, String sql) {
    return Flux.from(c.createStatement(sql).execute())
        .flatMap(Result::getRowsUpdated)
        .then(Mono.<Throwable>error(new AssertionError("no error from: " + sql)))
        .onErrorResume(e -> !(e instanceof AssertionError), Mono::just)
        .block(T);
  }

  /** Provokes the error with this SQLSTATE on a borrowed connection; returns what it raised. */
  private Throwable provoke(Connection c, String sqlState) {
    switch (sqlState) {
      case "P0001":
        return failure(c, "DO $$ BEGIN RAISE EXCEPTION 'lagoon test'; END $$");
      case "57014":
        Mono.from(c.setStatementTimeout(Duration.ofMillis(50))).block(T);
        return failure(c, "SELECT pg_sleep(30)");
      case "55P03":
        Mono.from(monitor.beginTransaction()).block(T);
        try {
          exec(monitor, "SELECT v FROM " + table + " WHERE id = 1 FOR UPDATE");
          return failure(c, "SELECT v FROM " + table + " WHERE id = 1 FOR UPDATE NOWAIT");
        } finally {
          Mono.from(monitor.rollbackTransaction()).block(T);
        }
      case "25P02":
        Mono.from(c.beginTransaction()).block(T);
        failure(c, "SELECT 1 / 0");
        return failure(c, "SELECT 1");
      case "23505":
        return failure(c, "INSERT INTO " + table + " VALUES (1, 2)");
      case "42601":
        return failure(c, "SELEC 1");
      default:
        throw new IllegalArgumentException(sqlState);
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"P0001", "57014", "55P03", "25P02", "23505", "42601"})
  void anOrdinarySqlErrorKeepsTheConnection(String sqlState) {
    Connection first = pool.create().block(T);
    int pid = pid(first);
    Throwable error = provoke(first, sqlState);
    assertThat(error).isInstanceOf(R2dbcException.class);
    assertThat(((R2dbcException) error).getSqlState()).as("%s", error).isEqualTo(sqlState);
    if (RAISED_AS_NON_TRANSIENT_RESOURCE_ERRORS.contains(sqlState)) {
      // the type alone would say the connection is gone
      assertThat(error).isInstanceOf(R2dbcNonTransientResourceException.class);
    }
    Mono.from(first.close()).block(T);

    Connection second = pool.create().block(T);
    try {
      assertThat(pid(second)).as("the same backend after %s", sqlState).isEqualTo(pid);
      assertThat(second.isAutoCommit()).isTrue();
    } finally {
      Mono.from(second.close()).block(T);
    }
    PoolStats stats = pool.stats();
    assertThat(stats.created()).as("opened in %s", stats).isEqualTo(1);
    assertThat(stats.closed()).as("closed in %s", stats).isZero();
  }

  @Test
  void aTerminatedBackendIsReplaced() {
    Connection first = pool.create().block(T);
    int pid = pid(first);
    // only this pool's backend: its pid and its application_name
    assertThat(backends.terminate(app, List.of(pid), Duration.ZERO)).containsEntry(pid, true);
    backends.awaitGone(app, List.of(pid));

    Throwable error = failure(first, "SELECT 1");
    assertThat(error).isInstanceOf(R2dbcException.class);
    assertThat(((R2dbcException) error).getSqlState()).as("%s", error).isIn("57P01", "08006");
    Mono.from(first.close()).block(T);

    Connection second = pool.create().block(T);
    try {
      assertThat(pid(second)).as("a new backend").isNotEqualTo(pid);
    } finally {
      Mono.from(second.close()).block(T);
    }
    assertThat(pool.stats().created()).isEqualTo(2);
    Await.until(() -> "the dead connection was closed: " + pool.stats(), Await.BOUND,
        () -> pool.stats().closed() == 1);
  }
}
