package io.lagoon;

import static io.lagoon.testing.Sql.exec;
import static io.lagoon.testing.Sql.one;
import static io.lagoon.testing.Sql.run;
import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.Await;
import io.lagoon.testing.MariadbSupport;
import io.lagoon.testing.Sql;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.Result;
import io.r2dbc.spi.Wrapped;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.function.Consumer;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.test.StepVerifier;

/**
 * Adversarial tests of isolation between borrowers (issue 7) against the real MariaDB, with a
 * pool of 1. MariaDB has no reset statement, so a borrow that may have changed the session must
 * cost a replaced connection; these tests look for changes that slip past that rule.
 *
 * <p>Every connection the pool opens is tracked by its CONNECTION_ID(), and only those are
 * counted.
 */
class AdversaryMariadbTest {

  private static final Duration T = Duration.ofSeconds(10);

  private final String tag = UUID.randomUUID().toString().substring(0, 8);
  private final String table = "lagoon_advm_" + tag;
  private final String lockName = "lagoon_advm_lock_" + tag;
  private final Set<Long> seenIds = new HashSet<>();
  private Connection monitor;
  private ConnectionPool pool;
  private String initialSqlMode;

  @BeforeEach
  void setUp() {
    monitor = Mono.from(MariadbSupport.connectionFactory().create()).block(T);
    exec(monitor, "CREATE TABLE " + table + " (v int) ENGINE=InnoDB");
    initialSqlMode = one(monitor, "SELECT @@session.sql_mode", String.class);
  }

  @AfterEach
  void tearDown() {
    if (pool != null) {
      pool.close().block(T);
      Await.until("every connection this test's pool opened is gone", () -> openOfOurs() == 0);
    }
    exec(monitor, "DROP TABLE IF EXISTS " + table);
    Mono.from(monitor.close()).block(T);
  }

  // ------------------------------------------------------------------ helpers

  private ConnectionPool pool(UnaryOperator<ConnectionPoolBuilder> poolOptions) {
    ConnectionFactory driver = MariadbSupport.connectionFactory();
    pool = poolOptions.apply(ConnectionPool.builder(driver).maxSize(1).initialSize(1)
        .maxAcquireTime(T).poolName("mariadb-adversary-" + tag)).build();
    return pool;
  }

  private ConnectionPool pool() {
    return pool(b -> b);
  }

  private long id(Connection c) {
    long id = MariadbSupport.connectionId(c);
    seenIds.add(id);
    return id;
  }

  /** How many of the connections this test's pool opened are still open on the server. */
  private long openOfOurs() {
    if (seenIds.isEmpty()) {
      return 0;
    }
    StringBuilder ids = new StringBuilder();
    for (Long id : seenIds) {
      ids.append(ids.length() == 0 ? "" : ",").append(id);
    }
    return one(monitor, "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID IN (" + ids
        + ")", Long.class);
  }

  private static Connection raw(Connection handle) {
    return (Connection) ((Wrapped<?>) handle).unwrap();
  }

  /**
   * Borrower 1 runs {@code first} and closes; borrower 2 (the same connection, or a replacement)
   * must find a fresh session.
   */
  private void assertNextBorrowerSeesAFreshSession(Consumer<Connection> first) {
    Connection h1 = pool.create().block(T);
    long id1 = id(h1);
    first.accept(h1);
    run(h1.close());

    Connection h2 = pool.create().block(T);
    try {
      long id2 = id(h2);
      List<String> leaks = new ArrayList<>();
      check(leaks, "@lagoon_v", one(h2, "SELECT @lagoon_v IS NULL", Long.class), 1L);
      check(leaks, "@@autocommit", one(h2, "SELECT @@session.autocommit", Long.class), 1L);
      check(leaks, "isAutoCommit()", h2.isAutoCommit(), true);
      check(leaks, "isolation", one(h2, "SELECT @@session.tx_isolation", String.class),
          "REPEATABLE-READ");
      check(leaks, "sql_mode", one(h2, "SELECT @@session.sql_mode", String.class),
          initialSqlMode);
      check(leaks, "temp table visible", Flux.from(h2.createStatement(
              "SELECT count(*) FROM lagoon_advm_t").execute())
          .flatMap(r -> r.map((row, m) -> true)).onErrorResume(e -> Mono.just(false))
          .blockLast(T), false);
      check(leaks, "named lock held", one(monitor, "SELECT IS_USED_LOCK('" + lockName + "') IS NULL",
          Long.class), 1L);
      check(leaks, "LAST_INSERT_ID()", one(h2, "SELECT LAST_INSERT_ID()", Long.class), 0L);
      check(leaks, "open transaction", one(monitor, "SELECT count(*) FROM"
          + " information_schema.INNODB_TRX WHERE trx_mysql_thread_id = " + id2, Long.class), 0L);
      assertThat(leaks).as("state borrower 1 (connection %s) left on connection %s", id1, id2)
          .isEmpty();
    } finally {
      run(h2.close());
    }
    assertThat(pool.stats().acquired()).isZero();
  }

  private static void check(List<String> leaks, String what, Object actual, Object expected) {
    if (!expected.equals(actual)) {
      leaks.add(what + "=" + actual + " (expected " + expected + ")");
    }
  }

  // ------------------------------------------------------------------ SQL that escapes SqlEffects

  @Test
  void aNamedLockTakenWithSelectGetLockIsNotHeldAfterClose() {
    pool();
    assertNextBorrowerSeesAFreshSession(h1 -> assertThat(one(h1,
        "SELECT GET_LOCK('" + lockName + "', 0)", Long.class)).isEqualTo(1L));
  }

  @Test
  void aUserVariableAssignedInsideSelectDoesNotReachTheNextBorrower() {
    pool();
    assertNextBorrowerSeesAFreshSession(h1 -> one(h1, "SELECT @lagoon_v := 'borrower one'",
        String.class));
  }

  @Test
  void aSelectIntoAUserVariableMentioningInsertDoesNotReachTheNextBorrower() {
    pool();
    assertNextBorrowerSeesAFreshSession(h1 -> exec(h1, "SELECT 'insert' INTO @lagoon_v"));
  }

  @Test
  void lastInsertIdSetBySelectDoesNotReachTheNextBorrower() {
    pool();
    assertNextBorrowerSeesAFreshSession(h1 -> one(h1, "SELECT LAST_INSERT_ID(4242)", Long.class));
  }

  @Test
  void aUserVariableSetThroughUnwrapDoesNotReachTheNextBorrower() {
    pool();
    assertNextBorrowerSeesAFreshSession(h1 -> exec(raw(h1), "SET @lagoon_v = 'borrower one'"));
  }

  @Test
  void anIsolationLevelSetBySqlThroughUnwrapDoesNotReachTheNextBorrower() {
    pool();
    assertNextBorrowerSeesAFreshSession(h1 -> exec(raw(h1),
        "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE"));
  }

  @Test
  void autoCommitSwitchedOffBySqlThroughUnwrapIsSwitchedBackAndNoWriteIsLost() {
    pool();
    assertNextBorrowerSeesAFreshSession(h1 -> exec(raw(h1), "SET autocommit=0"));
    Connection h3 = pool.create().block(T);
    exec(h3, "INSERT INTO " + table + " VALUES (3)");
    run(h3.close());
    assertThat(one(monitor, "SELECT count(*) FROM " + table, Long.class)).isEqualTo(1L);
  }

  /** Forms the classifier does see today: each costs a replaced connection and leaks nothing. */
  @ParameterizedTest
  @ValueSource(strings = {
      "/* c */ SET autocommit=0",
      "  set AUTOCOMMIT = 0",
      "SET @@autocommit = 0",
      "SET @lagoon_v = 'borrower one'",
      "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE",
      "SET sql_mode = 'ANSI'",
      "CREATE TEMPORARY TABLE lagoon_advm_t (x int)",
      "DO GET_LOCK('%LOCK%', 0)",
      "SELECT GET_LOCK('%LOCK%', 0) INTO @lagoon_unused",
      "START TRANSACTION",
      "BEGIN",
      "SET STATEMENT max_statement_time=1 FOR SELECT 1",
  })
  void sqlThatChangesTheSessionNeverReachesTheNextBorrower(String sql) {
    pool();
    assertNextBorrowerSeesAFreshSession(h1 -> exec(h1, sql.replace("%LOCK%", lockName)));
  }

  @Test
  void aTransactionStartedBySqlIsRolledBackNotCommitted() {
    pool();
    Connection h1 = pool.create().block(T);
    exec(h1, "START TRANSACTION");
    exec(h1, "INSERT INTO " + table + " VALUES (1)");
    run(h1.close());
    Connection h2 = pool.create().block(T);
    exec(h2, "INSERT INTO " + table + " VALUES (2)");
    run(h2.close());
    assertThat(one(monitor, "SELECT GROUP_CONCAT(v) FROM " + table, String.class)).isEqualTo("2");
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
      StepVerifier.create(Flux.from(r.map((row, m) -> row.get(0, Long.class))))
          .expectError(IllegalStateException.class).verify(T);
      assertThat(one(h2, "SELECT 7", Long.class)).isEqualTo(7L);
    } finally {
      run(h2.close());
    }
  }

  @Test
  void aConnectionReleasedWhileARowStreamIsStillOpenDoesNotBlockTheNextBorrower() {
    pool();
    Connection h1 = pool.create().block(T);
    java.util.concurrent.atomic.AtomicInteger got = new java.util.concurrent.atomic.AtomicInteger();
    reactor.core.publisher.BaseSubscriber<Long> slow = new reactor.core.publisher.BaseSubscriber<>() {
      @Override
      protected void hookOnSubscribe(org.reactivestreams.Subscription s) {
        s.request(1);
      }

      @Override
      protected void hookOnNext(Long v) {
        got.incrementAndGet();
      }
    };
    Sql.column(h1, "SELECT seq FROM seq_1_to_200000", Long.class).subscribe(slow);
    Await.until("the first row", () -> got.get() > 0);
    run(h1.close());
    try {
      Connection h2 = pool.create().block(T);
      try {
        StepVerifier.create(Sql.column(h2, "SELECT 7", Long.class))
            .expectNext(7L).expectComplete().verify(T);
      } finally {
        run(h2.close());
      }
    } finally {
      slow.dispose();
    }
  }

  @Test
  void aStalePublisherFromBeforeCloseTouchesNothing() {
    pool();
    Connection h1 = pool.create().block(T);
    Publisher<Void> autoCommitOff = h1.setAutoCommit(false);
    Publisher<Void> begin = h1.beginTransaction();
    Publisher<? extends Result> set = h1.createStatement("SET @lagoon_v = 1").execute();
    run(h1.close());
    assertNextBorrowerSeesAFreshSession(h2 -> {
      for (Publisher<?> stale : List.<Publisher<?>>of(autoCommitOff, begin, set)) {
        StepVerifier.create(stale).expectError(IllegalStateException.class).verify(T);
      }
    });
  }
}
