package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.PostgresSupport;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.Option;
import io.r2dbc.spi.R2dbcException;
import io.r2dbc.spi.R2dbcNonTransientResourceException;
import io.r2dbc.spi.Result;
import java.time.Duration;
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
  private Connection monitor;
  private ConnectionPool pool;

  @BeforeEach
  void setUp() {
    monitor = Mono.from(PostgresSupport.connectionFactory().create()).block(T);
    exec(monitor, "CREATE TABLE " + table + " (id int PRIMARY KEY, v int)");
    exec(monitor, "INSERT INTO " + table + " VALUES (1, 1)");
    ConnectionFactoryOptions options = ConnectionFactoryOptions.parse(PostgresSupport.r2dbcUrl())
        .mutate().option(Option.valueOf("applicationName"), app).build();
    pool = ConnectionPool.builder(ConnectionFactories.get(options)).maxSize(1).initialSize(1)
        .poolName("pg-sql-errors").build();
  }

  @AfterEach
  void tearDown() {
    if (pool != null) {
      pool.close().block(T);
    }
    exec(monitor, "DROP TABLE IF EXISTS " + table);
    Mono.from(monitor.close()).block(T);
  }

  private static void exec(Connection c, String sql) {
    Flux.from(c.createStatement(sql).execute()).flatMap(Result::getRowsUpdated).blockLast(T);
  }

  private static <V> Mono<V> one(Connection c, String sql, Class<V> type) {
    return Flux.from(c.createStatement(sql).execute())
        .flatMap(r -> r.map((row, meta) -> row.get(0, type))).single();
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
    Integer pid = one(first, "SELECT pg_backend_pid()", Integer.class).block(T);
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
      assertThat(one(second, "SELECT pg_backend_pid()", Integer.class).block(T))
          .as("the same backend after %s", sqlState).isEqualTo(pid);
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
    Integer pid = one(first, "SELECT pg_backend_pid()", Integer.class).block(T);
    // only this pool's backend: its pid and its application_name
    assertThat(one(monitor, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        + " WHERE pid = " + pid + " AND application_name = '" + app + "'", Boolean.class)
        .block(T)).isTrue();
    awaitGone(pid);

    Throwable error = failure(first, "SELECT 1");
    assertThat(error).isInstanceOf(R2dbcException.class);
    assertThat(((R2dbcException) error).getSqlState()).as("%s", error).isIn("57P01", "08006");
    Mono.from(first.close()).block(T);

    Connection second = pool.create().block(T);
    try {
      assertThat(one(second, "SELECT pg_backend_pid()", Integer.class).block(T))
          .as("a new backend").isNotEqualTo(pid);
    } finally {
      Mono.from(second.close()).block(T);
    }
    assertThat(pool.stats().created()).isEqualTo(2);
    Mono.fromCallable(pool::stats).filter(s -> s.closed() == 1)
        .repeatWhenEmpty(r -> r.delayElements(Duration.ofMillis(20)).take(500))
        .switchIfEmpty(Mono.error(new AssertionError("the dead connection was never closed: "
            + pool.stats())))
        .block(T);
  }

  /** Polls the server until the backend has exited. */
  private void awaitGone(Integer pid) {
    Flux.defer(() -> monitor.createStatement("SELECT count(*) FROM pg_stat_activity WHERE pid = "
            + pid).execute())
        .flatMap(r -> r.map((row, meta) -> row.get(0, Long.class)))
        .single()
        .filter(n -> n == 0)
        .repeatWhenEmpty(r -> r.delayElements(Duration.ofMillis(20)).take(1000))
        .switchIfEmpty(Mono.error(new AssertionError("backend " + pid + " never exited")))
        .block(T);
  }
}
