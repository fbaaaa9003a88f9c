package io.lagoon;

import static io.lagoon.testing.Backends.pid;
import static io.lagoon.testing.Sql.exec;
import static io.lagoon.testing.Sql.one;
import static io.lagoon.testing.Sql.run;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.lagoon.testing.Backends;
import io.lagoon.testing.PostgresSupport;
import io.lagoon.testing.Sql;
import io.r2dbc.spi.Batch;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.IsolationLevel;
import io.r2dbc.spi.Option;
import io.r2dbc.spi.Result;
import io.r2dbc.spi.ValidationDepth;
import io.r2dbc.spi.Wrapped;
import java.time.Duration;
import java.util.UUID;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.reactivestreams.Publisher;
import reactor.test.StepVerifier;

/**
 * Nothing one borrower does reaches the next borrower of the same PostgreSQL backend: stale
 * publishers, state changed through the handle, through unwrap() and through SQL.
 */
class PostgresIsolationTest {

  private static final Duration T = Duration.ofSeconds(10);

  private final String app = "lagoon-iso-" + UUID.randomUUID().toString().substring(0, 8);
  private final String table = "lagoon_iso_" + UUID.randomUUID().toString().substring(0, 8);
  private Backends backends;
  private Connection monitor;
  private ConnectionPool pool;

  @BeforeEach
  void setUp() {
    backends = Backends.connect();
    monitor = backends.monitor();
    exec(monitor, "CREATE TABLE " + table + " (v int)");
  }

  @AfterEach
  void tearDown() {
    if (pool != null) {
      pool.close().block(T);
    }
    exec(monitor, "DROP TABLE IF EXISTS " + table);
    backends.close();
  }

  private ConnectionPool pool(UnaryOperator<ConnectionFactoryOptions.Builder> driverOptions,
      UnaryOperator<ConnectionPoolBuilder> poolOptions) {
    ConnectionFactoryOptions options = driverOptions.apply(PostgresSupport.options(app).mutate())
        .build();
    ConnectionFactory driver = ConnectionFactories.get(options);
    pool = poolOptions.apply(ConnectionPool.builder(driver).maxSize(1).initialSize(1)
        .poolName("pg-isolation")).build();
    return pool;
  }

  private ConnectionPool pool() {
    return pool(b -> b, b -> b);
  }

  private long rows() {
    return one(monitor, "SELECT count(*) FROM " + table, Long.class);
  }

  // ------------------------------------------------------------------ stale publishers

  @Test
  void aPublisherObtainedBeforeCloseErrorsWhenSubscribedAfterItAndTouchesNothing() {
    pool();
    Connection h1 = pool.create().block(T);
    Integer pid = pid(h1);
    Publisher<Void> begin = h1.beginTransaction();
    Publisher<Void> timeout = h1.setStatementTimeout(Duration.ofSeconds(1));
    Publisher<Void> autoCommitOff = h1.setAutoCommit(false);
    Publisher<? extends Result> insert =
        h1.createStatement("INSERT INTO " + table + " VALUES (1)").execute();
    Batch batch = h1.createBatch().add("INSERT INTO " + table + " VALUES (2)");
    Publisher<? extends Result> batchRun = batch.execute();
    Publisher<Boolean> valid = h1.validate(ValidationDepth.LOCAL);
    run(h1.close());

    Connection h2 = pool.create().block(T);
    try {
      assertThat(pid(h2)).isEqualTo(pid);
      for (Publisher<?> stale : new Publisher<?>[] {begin, timeout, autoCommitOff, insert,
          batchRun}) {
        StepVerifier.create(stale).expectError(IllegalStateException.class).verify(T);
      }
      StepVerifier.create(valid).expectNext(false).verifyComplete();
      exec(h2, "INSERT INTO " + table + " VALUES (3)");
      assertThat(h2.isAutoCommit()).as("borrower 2 is in no transaction it never opened").isTrue();
      assertThat(one(h2, "SHOW statement_timeout", String.class)).isEqualTo("0");
    } finally {
      run(h2.close());
    }
    assertThat(rows()).as("only borrower 2's row, and it stayed").isEqualTo(1);
    assertThat(pool.stats().created()).isEqualTo(1);
  }

  @Test
  void aChangeNeverSubscribedCostsNoResetStatement() {
    pool();
    Connection h1 = pool.create().block(T);
    Integer pid = pid(h1);
    h1.setStatementTimeout(Duration.ofSeconds(1)); // obtained, never subscribed
    h1.beginTransaction();
    run(h1.close());
    assertThat(lastStatementOf(pid)).as("no statement ran on release")
        .isEqualTo("SELECT pg_backend_pid()");

    Connection h2 = pool.create().block(T);
    run(h2.setStatementTimeout(Duration.ofSeconds(1))); // this one ran: it is undone
    run(h2.close());
    assertThat(lastStatementOf(pid)).as("the reset ran").contains("RESET ALL");
  }

  /** The last statement the backend ran, as pg_stat_activity shows it. */
  private String lastStatementOf(Integer pid) {
    return one(monitor, "SELECT query FROM pg_stat_activity WHERE pid = " + pid, String.class);
  }

  // ------------------------------------------------------------------ initial state

  @Test
  void timeoutsReturnToTheValuesTheConnectionWasOpenedWith() {
    pool(b -> b.option(Option.valueOf("statementTimeout"), Duration.ofSeconds(10))
        .option(Option.valueOf("lockWaitTimeout"), Duration.ofSeconds(3)), b -> b);
    Connection h1 = pool.create().block(T);
    assertThat(one(h1, "SHOW statement_timeout", String.class)).isEqualTo("10s");
    run(h1.setStatementTimeout(Duration.ofSeconds(1)));
    run(h1.setLockWaitTimeout(Duration.ofMillis(500)));
    run(h1.close());

    Connection h2 = pool.create().block(T);
    try {
      assertThat(one(h2, "SHOW statement_timeout", String.class)).isEqualTo("10s");
      assertThat(one(h2, "SHOW lock_timeout", String.class)).isEqualTo("3s");
    } finally {
      run(h2.close());
    }
    assertThat(pool.stats().created()).as("reset, not replaced").isEqualTo(1);
  }

  @Test
  void postAllocateSettingsSurviveEveryReset() {
    pool(b -> b, b -> b.postAllocate(c -> Sql.updates(c, "SET search_path = pg_catalog, public")
        .then()));
    Connection h1 = pool.create().block(T);
    exec(h1, "SET search_path = public");
    run(h1.close());
    Connection h2 = pool.create().block(T);
    try {
      assertThat(one(h2, "SHOW search_path", String.class)).isEqualTo("pg_catalog, public");
    } finally {
      run(h2.close());
    }
  }

  @Test
  void autoCommitAndIsolationChangedBehindTheHandleAreRestored() {
    pool();
    Connection h1 = pool.create().block(T);
    Connection raw = (Connection) ((Wrapped<?>) h1).unwrap();
    run(raw.setTransactionIsolationLevel(IsolationLevel.SERIALIZABLE));
    run(raw.setAutoCommit(false));
    exec(raw, "INSERT INTO " + table + " VALUES (1)");
    run(h1.close());

    Connection h2 = pool.create().block(T);
    try {
      assertThat(h2.isAutoCommit()).isTrue();
      assertThat(h2.getTransactionIsolationLevel()).isEqualTo(IsolationLevel.READ_COMMITTED);
      assertThat(one(h2, "SHOW transaction_isolation", String.class)).isEqualTo("read committed");
      exec(h2, "INSERT INTO " + table + " VALUES (2)");
    } finally {
      run(h2.close());
    }
    assertThat(one(monitor, "SELECT string_agg(v::text, ',') FROM " + table, String.class))
        .as("the uncommitted row rolled back, the next borrower's row kept").isEqualTo("2");
  }

  // ------------------------------------------------------------------ session state through SQL

  @Test
  void sessionStateChangedThroughSqlNeverReachesTheNextBorrower() {
    pool();
    Connection h1 = pool.create().block(T);
    Integer pid = pid(h1);
    // the driver's own prepared-statement cache must survive the reset
    assertThat(Sql.bound(h1, "SELECT $1::int + 1", 41).block(T)).isEqualTo(42);
    exec(h1, "SET search_path = pg_catalog");
    exec(h1, "SET statement_timeout = '1s'");
    exec(h1, "SET application_name = 'someone-else'");
    exec(h1, "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE");
    exec(h1, "CREATE TEMP TABLE lagoon_tmp (x int)");
    exec(h1, "LISTEN lagoon_channel");
    one(h1, "SELECT pg_advisory_lock(4242)::text", String.class);
    exec(h1, "PREPARE lagoon_stmt AS SELECT 1");
    run(h1.close());

    Connection h2 = pool.create().block(T);
    try {
      assertThat(pid(h2)).isEqualTo(pid);
      assertThat(one(h2, "SHOW search_path", String.class)).isEqualTo("\"$user\", public");
      assertThat(one(h2, "SHOW statement_timeout", String.class)).isEqualTo("0");
      assertThat(one(h2, "SHOW application_name", String.class)).isEqualTo(app);
      assertThat(one(h2, "SHOW default_transaction_isolation", String.class))
          .isEqualTo("read committed");
      assertThat(one(h2, "SELECT to_regclass('pg_temp.lagoon_tmp') IS NULL", Boolean.class))
          .as("the temporary table is gone").isTrue();
      assertThat(one(h2, "SELECT count(*) FROM pg_listening_channels()", Long.class)).isZero();
      assertThat(one(monitor, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = "
          + pid, Long.class)).isZero();
      assertThat(one(h2, "SELECT count(*) FROM pg_prepared_statements WHERE from_sql",
          Long.class)).isZero();
      assertThat(Sql.bound(h2, "SELECT $1::int + 1", 1).block(T)).isEqualTo(2);
    } finally {
      run(h2.close());
    }
    assertThat(pool.stats().created()).as("reset, not replaced").isEqualTo(1);
  }

  @Test
  void neverModeLeavesSqlSessionChangesButStillRestoresWhatTheHandleChanged() {
    pool(b -> b, b -> b.sessionReset(SessionReset.NEVER));
    Connection h1 = pool.create().block(T);
    exec(h1, "SET search_path = pg_catalog");
    run(h1.setStatementTimeout(Duration.ofSeconds(2)));
    run(h1.close());
    Connection h2 = pool.create().block(T);
    try {
      assertThat(one(h2, "SHOW statement_timeout", String.class)).isEqualTo("0");
    } finally {
      run(h2.close());
    }
  }

  @Test
  void nullArgumentsAreIllegalArgumentsAsTheSpiRequires() {
    pool();
    Connection h = pool.create().block(T);
    try {
      assertThatThrownBy(() -> h.createStatement(null)).isInstanceOf(IllegalArgumentException.class);
      assertThatThrownBy(() -> h.createSavepoint(null)).isInstanceOf(IllegalArgumentException.class);
      assertThatThrownBy(() -> h.releaseSavepoint(null))
          .isInstanceOf(IllegalArgumentException.class);
      assertThatThrownBy(() -> h.rollbackTransactionToSavepoint(null))
          .isInstanceOf(IllegalArgumentException.class);
      assertThatThrownBy(() -> h.setTransactionIsolationLevel(null))
          .isInstanceOf(IllegalArgumentException.class);
      assertThatThrownBy(() -> h.setStatementTimeout(null))
          .isInstanceOf(IllegalArgumentException.class);
      assertThatThrownBy(() -> h.setLockWaitTimeout(null))
          .isInstanceOf(IllegalArgumentException.class);
      assertThatThrownBy(() -> h.beginTransaction(null))
          .isInstanceOf(IllegalArgumentException.class);
      assertThatThrownBy(() -> h.validate(null)).isInstanceOf(IllegalArgumentException.class);
      assertThatThrownBy(() -> h.createBatch().add(null))
          .isInstanceOf(IllegalArgumentException.class);
      assertThatThrownBy(() -> h.createStatement("SELECT $1").bind("$1", null))
          .isInstanceOf(IllegalArgumentException.class);
      assertThatThrownBy(() -> h.createStatement("SELECT $1").bind(0, null))
          .isInstanceOf(IllegalArgumentException.class);
      assertThatThrownBy(() -> h.createStatement("SELECT $1").bindNull(0, null))
          .isInstanceOf(IllegalArgumentException.class);
    } finally {
      run(h.close());
    }
  }
}
