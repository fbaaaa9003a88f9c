package io.lagoon;

import static io.lagoon.testing.Backends.pid;
import static io.lagoon.testing.Sql.exec;
import static io.lagoon.testing.Sql.one;
import static io.lagoon.testing.Sql.run;
import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.Await;
import io.lagoon.testing.Backends;
import io.lagoon.testing.PostgresSupport;
import io.lagoon.testing.Sql;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.IsolationLevel;
import io.r2dbc.spi.R2dbcException;
import io.r2dbc.spi.Result;
import io.r2dbc.spi.Wrapped;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.reactivestreams.Subscription;
import reactor.core.Disposable;
import reactor.core.publisher.BaseSubscriber;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.test.StepVerifier;

/**
 * Adversarial tests of isolation between borrowers (issue 7) against the real PostgreSQL, as a
 * user would break it: a pool of 1, so the next borrower gets the same backend.
 *
 * <p>Each test is a way a borrower tried to reach the next one: stale results, SQL the classifier
 * must see through (literals, comments, several statements), transactions opened by text that is
 * cancelled or fails, state set in {@code postAllocate}. They guard the promise.
 */
class AdversaryIsolationTest {

  private static final Duration T = Duration.ofSeconds(10);
  private static final String FRESH_SEARCH_PATH = "\"$user\", public";

  private final String tag = UUID.randomUUID().toString().substring(0, 8);
  private final String app = "lagoon-adv-" + tag;
  private final String table = "lagoon_adv_" + tag;
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
      // nothing this test opened stays open
      backends.awaitCount(app, 0, Await.BOUND);
    }
    exec(monitor, "DROP TABLE IF EXISTS " + table);
    exec(monitor, "DROP SEQUENCE IF EXISTS " + table + "_seq");
    exec(monitor, "DROP PROCEDURE IF EXISTS " + table + "_proc()");
    exec(monitor, "DROP FUNCTION IF EXISTS " + table + "_fn()");
    backends.close();
  }

  // ------------------------------------------------------------------ helpers

  private ConnectionPool pool(UnaryOperator<ConnectionFactoryOptions.Builder> driverOptions,
      UnaryOperator<ConnectionPoolBuilder> poolOptions) {
    ConnectionFactoryOptions options = driverOptions.apply(PostgresSupport.options(app).mutate())
        .build();
    ConnectionFactory driver = ConnectionFactories.get(options);
    pool = poolOptions.apply(ConnectionPool.builder(driver).maxSize(1).initialSize(1)
        .maxAcquireTime(T).poolName("pg-adversary-" + tag)).build();
    return pool;
  }

  private ConnectionPool pool() {
    return pool(b -> b, b -> b);
  }

  private static Integer bound(Connection c, int value) {
    return Sql.bound(c, "SELECT $1::int + 1", value).block(T);
  }

  private long rows() {
    return one(monitor, "SELECT count(*) FROM " + table, Long.class);
  }

  /**
   * Borrower 1 runs {@code first} and closes; borrower 2 gets the same backend and must find a
   * fresh session: every kind of state issue 7 lists.
   */
  private void assertNextBorrowerSeesAFreshSession(java.util.function.Consumer<Connection> first) {
    Connection h1 = pool.create().block(T);
    int pid = pid(h1);
    first.accept(h1);
    run(h1.close());

    Connection h2 = pool.create().block(T);
    try {
      assertThat(pid(h2)).as("same backend").isEqualTo(pid);
      List<String> leaks = new ArrayList<>();
      check(leaks, "search_path", one(h2, "SHOW search_path", String.class), FRESH_SEARCH_PATH);
      check(leaks, "current_user", one(h2, "SELECT current_user::text", String.class), "postgres");
      check(leaks, "statement_timeout", one(h2, "SHOW statement_timeout", String.class), "0");
      check(leaks, "default_transaction_isolation",
          one(h2, "SHOW default_transaction_isolation", String.class), "read committed");
      check(leaks, "temp tables", one(h2, "SELECT count(*) FROM pg_class WHERE relpersistence = 't'"
          + " AND pg_table_is_visible(oid)", Long.class), 0L);
      check(leaks, "cursors", one(h2, "SELECT count(*) FROM pg_cursors", Long.class), 0L);
      check(leaks, "listening", one(h2, "SELECT count(*) FROM pg_listening_channels()", Long.class),
          0L);
      check(leaks, "SQL-prepared", one(h2,
          "SELECT count(*) FROM pg_prepared_statements WHERE from_sql", Long.class), 0L);
      check(leaks, "advisory locks", one(monitor, "SELECT count(*) FROM pg_locks WHERE locktype ="
          + " 'advisory' AND pid = " + pid, Long.class), 0L);
      check(leaks, "auto-commit", h2.isAutoCommit(), true);
      check(leaks, "open transaction", one(h2, "SELECT now() = statement_timestamp()",
          Boolean.class), true);
      assertThat(leaks).as("state borrower 1 left behind").isEmpty();
    } finally {
      run(h2.close());
    }
  }

  private static void check(List<String> leaks, String what, Object actual, Object expected) {
    if (!expected.equals(actual)) {
      leaks.add(what + "=" + actual + " (expected " + expected + ")");
    }
  }

  // ------------------------------------------------------------------ stale results

  @Test
  void aResultObtainedBeforeCloseFailsWhenMappedAfterIt() {
    pool();
    Connection h1 = pool.create().block(T);
    Result r = Flux.from(h1.createStatement("SELECT 42").execute()).blockFirst(T);
    run(h1.close());
    Connection h2 = pool.create().block(T);
    try {
      StepVerifier.create(Flux.from(r.map((row, m) -> row.get(0, Integer.class))))
          .expectError(IllegalStateException.class).verify(T);
      assertThat(one(h2, "SELECT 7", Integer.class)).isEqualTo(7);
    } finally {
      run(h2.close());
    }
  }

  @Test
  void aResultsRowCountObtainedBeforeCloseFailsWhenReadAfterIt() {
    pool();
    Connection h1 = pool.create().block(T);
    Result r = Flux.from(h1.createStatement("INSERT INTO " + table + " VALUES (1)").execute())
        .blockFirst(T);
    run(h1.close());
    Connection h2 = pool.create().block(T);
    try {
      StepVerifier.create(Flux.from(r.getRowsUpdated()))
          .expectError(IllegalStateException.class).verify(T);
    } finally {
      run(h2.close());
    }
  }

  @Test
  void aConnectionReleasedWhileARowStreamIsStillOpenDoesNotBlockTheNextBorrower() {
    pool();
    Connection h1 = pool.create().block(T);
    int pid = pid(h1);
    AtomicReference<Subscription> held = new AtomicReference<>();
    List<Integer> got = new ArrayList<>();
    BaseSubscriber<Integer> slow = new BaseSubscriber<>() {
      @Override
      protected void hookOnSubscribe(Subscription s) {
        held.set(s);
        s.request(1);
      }

      @Override
      protected void hookOnNext(Integer v) {
        synchronized (got) {
          got.add(v);
        }
      }
    };
    Sql.column(h1, "SELECT generate_series(1, 200000)", Integer.class).subscribe(slow);
    Await.until("the first row", () -> {
      synchronized (got) {
        return !got.isEmpty();
      }
    });
    // the borrower closes without draining or cancelling its stream
    run(h1.close());
    try {
      Connection h2 = pool.create().block(T);
      try {
        StepVerifier.create(Sql.column(h2, "SELECT 7", Integer.class))
            .as("the next borrower's query is not stuck behind borrower 1's unread rows")
            .expectNext(7).expectComplete().verify(T);
        assertThat(pid(h2) == pid || pool.stats().created() == 2)
            .as("same backend, or the pool replaced it").isTrue();
      } finally {
        run(h2.close());
      }
    } finally {
      slow.dispose();
    }
  }

  // ------------------------------------------------------------------ SQL that escapes SqlEffects

  @Test
  void anUpdateOfPgSettingsIsASessionChange() {
    pool();
    assertNextBorrowerSeesAFreshSession(h1 -> exec(h1,
        "UPDATE pg_settings SET setting = 'pg_catalog' WHERE name = 'search_path'"));
  }

  @Test
  void aSelectIntoATemporaryTableIsASessionChangeEvenWhenItMentionsInsert() {
    pool();
    assertNextBorrowerSeesAFreshSession(h1 -> exec(h1,
        "SELECT 'insert' AS what INTO TEMP lagoon_adv_tmp"));
  }

  @Test
  void aSemicolonInsideALiteralDoesNotHideASessionChange() {
    pool();
    assertNextBorrowerSeesAFreshSession(h1 -> exec(h1,
        "SELECT ';insert' AS what INTO TEMP lagoon_adv_tmp2"));
  }

  @Test
  void deallocateAllBySqlDoesNotBreakTheNextBorrowersBoundQueries() {
    pool();
    Connection h1 = pool.create().block(T);
    assertThat(bound(h1, 41)).isEqualTo(42); // the driver prepares and caches it
    exec(h1, "DEALLOCATE ALL");
    run(h1.close());
    Connection h2 = pool.create().block(T);
    try {
      assertThat(bound(h2, 1)).isEqualTo(2);
    } finally {
      run(h2.close());
    }
  }

  @Test
  void discardAllBySqlDoesNotBreakTheNextBorrowersBoundQueries() {
    pool();
    Connection h1 = pool.create().block(T);
    assertThat(bound(h1, 41)).isEqualTo(42);
    exec(h1, "DISCARD ALL");
    run(h1.close());
    Connection h2 = pool.create().block(T);
    try {
      assertThat(bound(h2, 1)).isEqualTo(2);
    } finally {
      run(h2.close());
    }
  }

  @Test
  void sequenceStateOfAPlainSelectDoesNotReachTheNextBorrower() {
    exec(monitor, "CREATE SEQUENCE " + table + "_seq START 1000");
    pool();
    Connection h1 = pool.create().block(T);
    assertThat(one(h1, "SELECT nextval('" + table + "_seq')", Long.class)).isEqualTo(1000L);
    run(h1.close());
    Connection h2 = pool.create().block(T);
    try {
      StepVerifier.create(Sql.column(h2, "SELECT lastval()", Long.class))
          .as("lastval() is not yet defined in this session")
          .expectError(R2dbcException.class).verify(T);
    } finally {
      run(h2.close());
    }
  }


  @Test
  void aFunctionCalledFromSelectThatChangesTheSessionIsUndoneInAlwaysMode() {
    exec(monitor, "CREATE FUNCTION " + table + "_fn() RETURNS int LANGUAGE plpgsql AS"
        + " $$BEGIN PERFORM set_config('search_path', 'pg_catalog', false); RETURN 1; END$$");
    pool(b -> b, b -> b.sessionReset(SessionReset.ALWAYS));
    assertNextBorrowerSeesAFreshSession(h1 -> one(h1, "SELECT " + table + "_fn()",
        Integer.class));
  }

  /** Forms of SQL that change the session which the classifier does see today. */
  @ParameterizedTest
  @ValueSource(strings = {
      "/* leading comment */ SET search_path = pg_catalog",
      "-- line comment\nSET search_path = pg_catalog",
      "   \n\tset SEARCH_PATH to pg_catalog",
      "SeT SESSION search_path = pg_catalog",
      "SELECT 1; SET search_path = pg_catalog",
      "SELECT 1;SET search_path=pg_catalog;",
      "SELECT set_config('search_path', 'pg_catalog', false)",
      "select PG_CATALOG.SET_CONFIG('search_path', 'pg_catalog', false)",
      "WITH x AS (SELECT set_config('search_path', 'pg_catalog', false)) SELECT * FROM x",
      "(SELECT set_config('search_path', 'pg_catalog', false))",
      "EXPLAIN ANALYZE SELECT set_config('search_path', 'pg_catalog', false)",
      "DO $$BEGIN EXECUTE 'SET search_path = pg_catalog'; END$$",
      "SET ROLE pg_monitor",
      "SET SESSION AUTHORIZATION pg_monitor",
      "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
      "SET statement_timeout = 1234",
      "CREATE TEMP TABLE lagoon_adv_t (x int)",
      "create temporary table lagoon_adv_t AS SELECT 1 AS x",
      "SELECT 1 AS x INTO TEMP lagoon_adv_t",
      "DECLARE lagoon_adv_c CURSOR WITH HOLD FOR SELECT 1",
      "BEGIN; DECLARE lagoon_adv_c CURSOR WITH HOLD FOR SELECT 1; COMMIT",
      "LISTEN lagoon_adv_channel",
      "SELECT pg_advisory_lock(77001)",
      "SELECT pg_try_advisory_lock(77002)",
      "SELECT pg_advisory_lock_shared(77003)",
      "PREPARE lagoon_adv_p AS SELECT 1",
      "BEGIN",
      "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
      "BEGIN; SET LOCAL search_path = pg_catalog",
      "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
      "BEGIN; SELECT pg_advisory_xact_lock(77004)",
  })
  void sqlThatChangesTheSessionNeverReachesTheNextBorrower(String sql) {
    pool();
    assertNextBorrowerSeesAFreshSession(h1 -> Flux.from(h1.createStatement(sql).execute())
        .flatMap(Result::getRowsUpdated).onErrorResume(e -> Mono.empty()).blockLast(T));
    assertThat(pool.stats().acquired()).isZero();
  }

  @Test
  void aProcedureCalledWithCallIsASessionChange() {
    exec(monitor, "CREATE PROCEDURE " + table + "_proc() LANGUAGE plpgsql AS"
        + " $$BEGIN PERFORM set_config('search_path', 'pg_catalog', false); END$$");
    pool();
    assertNextBorrowerSeesAFreshSession(h1 -> exec(h1, "CALL " + table + "_proc()"));
  }

  @Test
  void aTransactionBegunBySqlWithRowsWrittenIsRolledBackNotCommitted() {
    pool();
    Connection h1 = pool.create().block(T);
    exec(h1, "/* app */ BEGIN");
    exec(h1, "INSERT INTO " + table + " VALUES (1)");
    run(h1.close());
    Connection h2 = pool.create().block(T);
    try {
      exec(h2, "INSERT INTO " + table + " VALUES (2)");
    } finally {
      run(h2.close());
    }
    assertThat(one(monitor, "SELECT string_agg(v::text, ',') FROM " + table, String.class))
        .isEqualTo("2");
  }

  /**
   * A statement fails inside a transaction and the borrower closes at once, from its error path,
   * as {@code Flux.usingWhen(pool.create(), work, Connection::close, (c, e) -> c.close(), ...)}
   * does. The next borrower must not inherit the aborted transaction.
   */
  @Test
  void aBorrowerClosingFromTheErrorOfAFailedStatementInATransactionLeavesNoAbortedTransaction() {
    pool();
    int poisoned = 0;
    List<String> seen = new ArrayList<>();
    for (int round = 0; round < 30; round++) {
      Flux.usingWhen(pool.create(),
              c -> Flux.from(c.beginTransaction())
                  .thenMany(Flux.from(c.createStatement(
                      "INSERT INTO lagoon_adv_missing_table VALUES (1)").execute()))
                  .flatMap(Result::getRowsUpdated),
              Connection::close, (c, e) -> c.close(), Connection::close)
          .onErrorResume(e -> Mono.empty()).blockLast(T);
      Throwable failed = Flux.usingWhen(pool.create(),
              c -> Sql.column(c, "SELECT 1", Integer.class),
              Connection::close, (c, e) -> c.close(), Connection::close)
          .then(Mono.<Throwable>empty()).onErrorResume(Mono::just).block(T);
      if (failed != null) {
        poisoned++;
        seen.add(String.valueOf(failed.getMessage()));
      }
    }
    assertThat(poisoned).as("next borrowers that failed: %s", seen).isZero();
  }

  @Test
  void aFailedMultiStatementTransactionBySqlIsRolledBackBeforeTheNextBorrower() {
    pool();
    int poisoned = 0;
    for (int round = 0; round < 30; round++) {
      Connection h1 = pool.create().block(T);
      Flux.from(h1.createStatement("BEGIN; INSERT INTO lagoon_adv_missing_table VALUES (1)")
          .execute()).flatMap(Result::getRowsUpdated).onErrorResume(e -> Mono.empty())
          .blockLast(T);
      run(h1.close());
      Connection h2 = pool.create().block(T);
      try {
        one(h2, "SELECT 1", Integer.class);
      } catch (RuntimeException e) {
        poisoned++;
      } finally {
        run(h2.close());
      }
    }
    assertThat(poisoned).as("next borrowers in an aborted transaction").isZero();
  }

  @Test
  void aTransactionOpenedAndWrittenInOneTextNeverSwallowsTheNextBorrowersWrites() {
    pool();
    int rounds = 30;
    for (int round = 0; round < rounds; round++) {
      Connection h1 = pool.create().block(T);
      exec(h1, "BEGIN; INSERT INTO " + table + " VALUES (1)");
      run(h1.close());
      Connection h2 = pool.create().block(T);
      exec(h2, "INSERT INTO " + table + " VALUES (2)");
      run(h2.close());
    }
    assertThat(one(monitor, "SELECT count(*) FILTER (WHERE v = 2) || '/' || count(*) FILTER"
        + " (WHERE v = 1) FROM " + table, String.class))
        .as("every next borrower's row kept / borrower 1's uncommitted rows").isEqualTo(rounds + "/0");
  }

  @Test
  void aCancelledTextThatOpenedATransactionNeverSwallowsTheNextBorrowersWrites() {
    pool();
    int rounds = 5;
    for (int round = 0; round < rounds; round++) {
      Connection h1 = pool.create().block(T);
      Flux.from(h1.createStatement("BEGIN; INSERT INTO " + table + " VALUES (1);"
          + " SELECT pg_sleep(0.2)").execute()).take(1).blockLast(T);
      run(h1.close());
      Connection h2 = pool.create().block(T);
      exec(h2, "INSERT INTO " + table + " VALUES (2)");
      run(h2.close());
    }
    assertThat(one(monitor, "SELECT count(*) FILTER (WHERE v = 2) || '/' || count(*) FILTER"
        + " (WHERE v = 1) FROM " + table, String.class))
        .as("every next borrower's row kept / borrower 1's uncommitted rows").isEqualTo(rounds + "/0");
  }

  // ------------------------------------------------------------------ initial state

  @Test
  void anIsolationLevelSetBySqlInPostAllocateSurvivesABorrowersSetTransactionIsolationLevel() {
    pool(b -> b, b -> b.postAllocate(c -> Sql.updates(c,
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ").then()));
    Connection h1 = pool.create().block(T);
    assertThat(one(h1, "SHOW default_transaction_isolation", String.class))
        .isEqualTo("repeatable read");
    run(h1.setTransactionIsolationLevel(IsolationLevel.SERIALIZABLE));
    run(h1.close());
    Connection h2 = pool.create().block(T);
    try {
      assertThat(one(h2, "SHOW default_transaction_isolation", String.class))
          .isEqualTo("repeatable read");
    } finally {
      run(h2.close());
    }
  }

  @Test
  void anIsolationLevelSetBySqlBehindUnwrapIsUndone() {
    pool();
    assertNextBorrowerSeesAFreshSession(h1 -> exec((Connection) ((Wrapped<?>) h1).unwrap(),
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE"));
  }

  // ------------------------------------------------------------------ killed backends, hooks

  @Test
  void aBackendKilledMidTransactionIsReplacedAndNothingIsCommittedOrLeaked() {
    pool();
    Connection h1 = pool.create().block(T);
    int pid = pid(h1);
    run(h1.beginTransaction());
    exec(h1, "INSERT INTO " + table + " VALUES (1)");
    assertThat(backends.terminate(app, List.of(pid), Duration.ZERO)).containsEntry(pid, true);
    Connection raw = (Connection) ((Wrapped<?>) h1).unwrap();
    Await.driverSeesClosed("the driver sees the kill", List.of(raw));
    StepVerifier.create(Flux.from(h1.commitTransaction())).expectError().verify(T);
    run(h1.close());

    Connection h2 = pool.create().block(T);
    try {
      assertThat(pid(h2)).isNotEqualTo(pid);
      assertThat(h2.isAutoCommit()).isTrue();
      exec(h2, "INSERT INTO " + table + " VALUES (2)");
    } finally {
      run(h2.close());
    }
    assertThat(one(monitor, "SELECT string_agg(v::text, ',') FROM " + table, String.class))
        .isEqualTo("2");
    assertThat(pool.stats().acquired()).isZero();
    backends.awaitCount(app, 1, Await.BOUND);
  }

  @Test
  void aPreReleaseThatThrowsReplacesTheConnectionAndFreesTheSlot() {
    pool(b -> b, b -> b.preRelease(c -> {
      throw new IllegalStateException("boom");
    }));
    Connection h1 = pool.create().block(T);
    int pid = pid(h1);
    exec(h1, "SET search_path = pg_catalog");
    run(h1.close());
    Connection h2 = pool.create().block(T);
    try {
      assertThat(pid(h2)).isNotEqualTo(pid);
      assertThat(one(h2, "SHOW search_path", String.class)).isEqualTo(FRESH_SEARCH_PATH);
    } finally {
      run(h2.close());
    }
    assertThat(pool.stats().acquired()).isZero();
    // the throwing preRelease replaces every returned connection, h2's too
    Await.until("backends of " + app + " match the pool's allocated count",
        () -> backends.count(app) == pool.stats().allocated());
  }

  @Test
  void aPreReleaseThatHangsIsBoundedAndTheConnectionReplaced() {
    pool(b -> b, b -> b.maxValidationTime(Duration.ofMillis(500))
        .preRelease(c -> Mono.never()));
    Connection h1 = pool.create().block(T);
    int pid = pid(h1);
    run(h1.close());
    Connection h2 = pool.create().block(T);
    assertThat(pid(h2)).isNotEqualTo(pid);
    backends.awaitCount(app, 1, Await.BOUND); // while h2 holds it
    run(h2.close());
  }

  @Test
  void aPostAllocateThatThrowsLeaksNoBackend() {
    pool(b -> b, b -> b.initialSize(0).maxAcquireTime(Duration.ofSeconds(2))
        .postAllocate(c -> {
          throw new IllegalStateException("postAllocate boom");
        }));
    StepVerifier.create(pool.create()).expectError().verify(T);
    backends.awaitCount(app, 0, Await.BOUND); // no backend left open
    assertThat(pool.stats().acquired()).isZero();
  }

  // ------------------------------------------------------------------ close() itself

  @Test
  void closeCancelledMidResetStillResetsAndASecondCloseIsANoOp() {
    pool();
    Connection h1 = pool.create().block(T);
    int pid = pid(h1);
    exec(h1, "SET search_path = pg_catalog");
    Disposable d = Mono.from(h1.close()).subscribe();
    d.dispose(); // cancel the close publisher while the reset runs
    run(h1.close()); // second close: completes, does nothing
    Connection h2 = pool.create().block(T);
    try {
      assertThat(pid(h2)).isEqualTo(pid);
      assertThat(one(h2, "SHOW search_path", String.class)).isEqualTo(FRESH_SEARCH_PATH);
      run(h1.close()); // a stale close must not return h2's connection
      assertThat(pool.stats().acquired()).as("h2 still holds it").isEqualTo(1);
    } finally {
      run(h2.close());
    }
    assertThat(pool.stats().acquired()).isZero();
  }

  @Test
  void aStaleStatementAndBatchCreatedBeforeCloseNeverRunOnTheNextBorrower() {
    pool();
    Connection h1 = pool.create().block(T);
    io.r2dbc.spi.Statement st = h1.createStatement("INSERT INTO " + table + " VALUES ($1)");
    io.r2dbc.spi.Batch batch = h1.createBatch().add("SET search_path = pg_catalog");
    run(h1.close());
    Connection h2 = pool.create().block(T);
    try {
      st.bind("$1", 9); // binding a stale statement must not matter
      StepVerifier.create(Flux.from(st.execute())).expectError(IllegalStateException.class)
          .verify(T);
      StepVerifier.create(Flux.from(batch.execute())).expectError(IllegalStateException.class)
          .verify(T);
      assertThat(one(h2, "SHOW search_path", String.class)).isEqualTo(FRESH_SEARCH_PATH);
    } finally {
      run(h2.close());
    }
    assertThat(rows()).isZero();
  }
}
