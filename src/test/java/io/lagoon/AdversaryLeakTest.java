package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.lagoon.internal.PoolConfig;
import io.lagoon.spring.LagoonAutoConfiguration;
import io.lagoon.testing.Await;
import io.lagoon.testing.Gc;
import io.lagoon.testing.Backends;
import io.lagoon.testing.CapturedLogs;
import io.lagoon.testing.FaultProxy;
import io.lagoon.testing.Peek;
import io.lagoon.testing.PostgresSupport;
import io.lagoon.testing.SerializedVirtualTime;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryMetadata;
import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.Option;
import io.r2dbc.spi.Result;
import io.r2dbc.spi.ValidationDepth;
import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Function;
import java.util.function.UnaryOperator;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Disabled;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.reactivestreams.Publisher;
import org.springframework.boot.autoconfigure.AutoConfigurations;
import org.springframework.boot.r2dbc.autoconfigure.R2dbcAutoConfiguration;
import org.springframework.boot.test.context.FilteredClassLoader;
import org.springframework.boot.test.context.runner.ApplicationContextRunner;
import org.springframework.r2dbc.core.DatabaseClient;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Schedulers;

/**
 * Adversarial tests of leak detection and of the promise that no connection is ever lost, against
 * the real PostgreSQL, as a demanding user would try to break them: bad thresholds, leak reports
 * (their content, their INFO, their absence while the pool itself holds a connection), handles
 * dropped without {@code close()}, cancellations, pool closes during validation, reset and
 * connect, killed backends, and the backend count under load.
 *
 * <p>Every pool marks its backends with an application name of its own, and only those are
 * counted or terminated. Most pools run on a virtual-time scheduler ({@link
 * SerializedVirtualTime}): thresholds, grace periods and housekeeping happen when the test advances
 * time, while the I/O is real. After each test every pool is closed and its backends must be
 * gone: opened = closed.
 *
 * <p>The disabled tests are failures left open, each with its reason; README's "Known limits with
 * PostgreSQL" describes them.
 */
class AdversaryLeakTest {

  private static final Duration T = Duration.ofSeconds(30);
  private static final String SITE = "io.lagoon.internal.LeakDetector$BorrowSite: create() called"
      + " on thread '";
  private static final String WARN_LENT = "has been lent for";
  private static final String INFO_BACK = "came back after";
  private static final String WARN_ABANDONED = "a lent connection was never closed";

  private final String tag = UUID.randomUUID().toString().substring(0, 8);
  private final String app = "lagoon-advleak-" + tag;
  private final long lockKey = ThreadLocalRandom.current().nextLong(1L << 40, 1L << 50);
  private final SerializedVirtualTime time = new SerializedVirtualTime();
  private final List<ConnectionPool> pools = new ArrayList<>();
  private Backends backends;

  @BeforeEach
  void setUp() {
    backends = Backends.connect();
  }

  @AfterEach
  void tearDown() {
    try {
      if (lockHolder != null) {
        exec(lockHolder, "SELECT pg_advisory_unlock_all()"); // queries waiting for it end
        Mono.from(lockHolder.close()).block(T);
      }
      for (ConnectionPool p : pools) {
        // Close under any borrower still holding a connection, then every backend must be gone.
        CompletableFuture<Void> closed = p.closeGracefully(Duration.ZERO).toFuture();
        time.advanceTimeBy(Duration.ZERO);
        Mono.fromFuture(closed).block(T);
      }
      backends.awaitCount(app, 0, T);
      for (ConnectionPool p : pools) {
        PoolStats s = p.stats();
        assertThat(s.closed()).as("opened = closed: %s", s).isEqualTo(s.created());
      }
    } finally {
      backends.close();
      time.dispose();
    }
  }

  // ------------------------------------------------------------------ helpers

  private ConnectionFactoryOptions.Builder driverOptions() {
    return ConnectionFactoryOptions.parse(PostgresSupport.r2dbcUrl()).mutate()
        .option(Option.valueOf("applicationName"), app);
  }

  private ConnectionFactory driver() {
    return ConnectionFactories.get(driverOptions().build());
  }

  /** A pool on PostgreSQL in virtual time, empty at start, named after this test's tag. */
  private ConnectionPool pool(UnaryOperator<ConnectionPoolBuilder> config) {
    return keep(config.apply(ConnectionPool.builder(driver()).initialSize(0).scheduler(time)
        .maxAcquireTime(T).poolName("advleak-" + tag)).build());
  }

  private ConnectionPool keep(ConnectionPool p) {
    pools.add(p);
    return p;
  }

  private static Connection borrow(Mono<Connection> create) {
    Connection c = create.block(T);
    assertThat(c).isNotNull();
    return c;
  }

  private static void close(Connection c) {
    Mono.from(c.close()).block(T);
  }

  private static <V> V one(Connection c, String sql, Class<V> type) {
    return Flux.from(c.createStatement(sql).execute())
        .flatMap(r -> r.map((row, meta) -> row.get(0, type))).blockLast(T);
  }

  private static void exec(Connection c, String sql) {
    Flux.from(c.createStatement(sql).execute()).flatMap(Result::getRowsUpdated).blockLast(T);
  }

  private static int pid(Connection c) {
    return one(c, "SELECT pg_backend_pid()", Integer.class);
  }

  private static int count(String log, String text) {
    return log.split(Pattern.quote(text), -1).length - 1;
  }

  /** The first frame of the borrow site's stack that follows the {@code n}-th site in the log. */
  private static String firstFrame(String log, int n) {
    int at = -1;
    for (int i = 0; i <= n; i++) {
      at = log.indexOf(SITE, at + 1);
      assertThat(at).as("borrow site #%s in:%n%s", i, log).isNotNegative();
    }
    return log.substring(at).split("\\R", 3)[1].strip();
  }

  /**
   * Collects garbage and runs housekeeping (virtual time) until the pool took back {@code n}
   * abandoned connections in all, at most 200 rounds.
   */
  private void collectUntilAbandoned(ConnectionPool pool, long n) {
    for (int i = 0; i < 200 && pool.stats().abandoned() < n; i++) {
      Gc.collect();
      time.advanceTimeBy(Duration.ofSeconds(30));
    }
    assertThat(pool.stats().abandoned()).as("abandoned connections taken back: %s", pool.stats())
        .isEqualTo(n);
  }

  // ------------------------------------------------------------------ locks that hold the pool

  private Connection lockHolder;

  /** Takes this test's advisory lock on a session of its own: SQL waiting for it blocks. */
  private void lock() {
    if (lockHolder == null) {
      lockHolder = Mono.from(PostgresSupport.connectionFactory().create()).block(T);
    }
    exec(lockHolder, "SELECT pg_advisory_lock(" + lockKey + ")");
  }

  private void unlock() {
    exec(lockHolder, "SELECT pg_advisory_unlock(" + lockKey + ")");
  }

  /** SQL that waits while {@link #lock()} holds the lock. */
  private String waitForLock() {
    return "SELECT pg_advisory_xact_lock(" + lockKey + ")";
  }

  private Mono<Void> runWaitingForLock(Connection c) {
    return Flux.from(c.createStatement(waitForLock()).execute())
        .flatMap(r -> r.map((row, meta) -> 1)).then();
  }

  /** Waits until one of this pool's backends waits for the lock. */
  private void awaitLockWaiter() {
    Await.until("a backend of " + app + " waits for the advisory lock", () -> one(lockHolder,
        "SELECT count(*)::int FROM pg_stat_activity WHERE application_name = '" + app
            + "' AND wait_event_type = 'Lock'", Integer.class) == 1);
  }

  // ------------------------------------------------------------------ the threshold option

  private static PoolConfig config(ConnectionPool pool) throws ReflectiveOperationException {
    Field f = ConnectionPool.class.getDeclaredField("config");
    f.setAccessible(true);
    return (PoolConfig) f.get(pool);
  }

  /** A pool from a lagoon URL over PostgreSQL with {@code query} appended; opens nothing. */
  private ConnectionPool fromUrl(String query) {
    String url = PostgresSupport.r2dbcUrl()
        .replaceFirst("^r2dbc:postgresql:", "r2dbc:lagoon:postgresql:");
    url += (url.contains("?") ? "&" : "?") + "initialSize=0&applicationName=" + app + "&" + query;
    return keep((ConnectionPool) ConnectionFactories.get(url));
  }

  @ParameterizedTest
  @ValueSource(strings = {"30s", "30S", "PT30S", "pt30s", "30000ms", "PT30.000S", " 30s "})
  void everyDocumentedFormOfTheThresholdIsRead(String value) throws Exception {
    ConnectionPool pool = fromUrl("leakDetectionThreshold=" + value.replace(" ", "%20"));
    assertThat(config(pool).leakDetectionThreshold()).isEqualTo(Duration.ofSeconds(30));
    assertThat(pool.create()).as("on: each create() records its own site")
        .isNotSameAs(pool.create());
  }

  @ParameterizedTest
  @ValueSource(strings = {"0", "00", "PT0S", "0ms", "-0"})
  void zeroInAnyFormTurnsDetectionOff(String value) throws Exception {
    ConnectionPool pool = fromUrl("leakDetectionThreshold=" + value);
    assertThat(config(pool).leakDetection()).isFalse();
    assertThat(pool.create()).as("off: one shared Mono, no stack recorded").isSameAs(pool.create());
  }

  @Test
  void badThresholdsAreRefusedNamingTheOptionAndTheirValue() {
    assertThatThrownBy(() -> fromUrl("leakDetectionThreshold=abc"))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContainingAll("leakDetectionThreshold", "abc", "must be a duration");
    assertThatThrownBy(() -> fromUrl("leakDetectionThreshold=30000"))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContainingAll("leakDetectionThreshold", "30000", "needs a unit");
    assertThatThrownBy(() -> fromUrl("leakDetectionThreshold=-1s"))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("leakDetectionThreshold (PT-1S) must not be negative (zero disables leak"
            + " detection)");
    assertThatThrownBy(() -> fromUrl("leakDetectionThreshold=99999999999999999999s"))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContainingAll("leakDetectionThreshold", "99999999999999999999s");
    assertThatThrownBy(() -> fromUrl("leakDetectionThreshold="))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("leakDetectionThreshold");
    assertThatThrownBy(() -> ConnectionPool.builder(driver()).leakDetectionThreshold(null))
        .isInstanceOf(NullPointerException.class)
        .hasMessage("leakDetectionThreshold must not be null");
    assertThatThrownBy(() -> LagoonConnectionFactoryProvider.builder(driverOptions()
            .option(ConnectionFactoryOptions.DRIVER, "lagoon")
            .option(ConnectionFactoryOptions.PROTOCOL, "postgresql")
            .option(Option.valueOf("leakDetectionThreshold"), 30_000).build()))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("leakDetectionThreshold");
  }

  @Test
  void aUnitlessNegativeThresholdIsNotToldThatNegativeMeansNoLimit() {
    // For timeouts a negative value means "no limit"; for this option it is refused, so the hint
    // that comes with a missing unit must not suggest it.
    assertThatThrownBy(() -> fromUrl("leakDetectionThreshold=-30000"))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContainingAll("leakDetectionThreshold", "-30000", "needs a unit")
        .hasMessageNotContaining("no limit");
    assertThatThrownBy(() -> fromUrl("maxAcquireTime=-30000"))
        .as("where it is true, the hint stays")
        .hasMessageContaining("means no limit");
  }

  @Test
  void aHugeThresholdIsReadAsNoLimitLikeEveryOtherDuration() throws Exception {
    ConnectionPool pool = fromUrl("leakDetectionThreshold=PT1000000H");
    assertThat(PoolConfig.isNoLimit(config(pool).leakDetectionThreshold())).isTrue();
  }

  // ------------------------------------------------------------------ the Spring Boot property

  private final ApplicationContextRunner boot =
      new ApplicationContextRunner()
          .withConfiguration(AutoConfigurations.of(
              R2dbcAutoConfiguration.class,
              LagoonAutoConfiguration.class))
          .withClassLoader(new FilteredClassLoader(
              DatabaseClient.class));

  @Test
  void theSpringPropertyReadsSpringDurationsAndMustAgreeWithTheUrl() {
    boot.withPropertyValues("spring.r2dbc.url=r2dbc:recording://db/shop",
            "lagoon.pool.leak-detection-threshold=abc")
        .run(context -> assertThat(context).hasFailed().getFailure()
            .hasMessageContaining("lagoon.pool.leak-detection-threshold"));
    // Spring reads a bare number as milliseconds (a URL refuses it: it needs a unit)
    boot.withPropertyValues("spring.r2dbc.url=r2dbc:recording://db/shop",
            "lagoon.pool.leak-detection-threshold=30000")
        .run(context -> assertThat(config(context.getBean(ConnectionPool.class))
            .leakDetectionThreshold()).isEqualTo(Duration.ofSeconds(30)));
    boot.withPropertyValues("spring.r2dbc.url=r2dbc:recording://db/shop",
            "lagoon.pool.leak-detection-threshold=0")
        .run(context -> assertThat(config(context.getBean(ConnectionPool.class)).leakDetection())
            .isFalse());
    boot.withPropertyValues(
            "spring.r2dbc.url=r2dbc:lagoon:recording://db/shop?leakDetectionThreshold=30s",
            "lagoon.pool.leak-detection-threshold=30000ms")
        .run(context -> assertThat(config(context.getBean(ConnectionPool.class))
            .leakDetectionThreshold()).isEqualTo(Duration.ofSeconds(30)));
    boot.withPropertyValues(
            "spring.r2dbc.url=r2dbc:lagoon:recording://db/shop?leakDetectionThreshold=10s",
            "lagoon.pool.leak-detection-threshold=30s")
        .run(context -> assertThat(context).hasFailed().getFailure().rootCause()
            .hasMessageContainingAll("lagoon.pool.leak-detection-threshold (PT30S)",
                "the URL's leakDetectionThreshold (PT10S)"));
  }

  // ------------------------------------------------------------------ what a report says

  @Test
  void eachWayToBorrowIsReportedWithItsOwnCallerAndItsReturnAtInfo() {
    ConnectionPool pool = pool(b -> b.maxSize(3).leakDetectionThreshold(Duration.ofSeconds(10)));
    String log;
    try (CapturedLogs logs = CapturedLogs.start(false)) {
      Connection held = borrow(pool.create());
      Disposable work = pool.withConnection(c -> Mono.never()).subscribe();
      AtomicBoolean begun = new AtomicBoolean();
      Disposable tx = pool.inTransaction(c -> {
        begun.set(true); // BEGIN has completed: disposing now cancels no statement on the wire
        return Mono.never();
      }).subscribe();
      // Cancelling BEGIN itself from this thread could wedge the connection in r2dbc-postgresql
      // 1.1.1 (README, known limits), and its reset would then wait for a virtual-time bound.
      Await.until("three lent", () -> pool.stats().acquired() == 3 && begun.get());
      time.advanceTimeBy(Duration.ofSeconds(9));
      assertThat(logs.text()).doesNotContain(WARN_LENT);
      time.advanceTimeBy(Duration.ofSeconds(20));
      assertThat(pool.stats().leaks()).isEqualTo(3);
      close(held);
      work.dispose();
      tx.dispose();
      Await.until("three INFO", () -> count(logs.text(), INFO_BACK) == 3);
      Await.until(() -> "all back: " + pool.stats() + "; log:\n" + logs.text(), Await.BOUND,
          () -> pool.stats().idle() == 3);
      log = logs.text();
    }
    assertThat(count(log, WARN_LENT)).isEqualTo(3);
    assertThat(log).contains("Pool 'advleak-" + tag + "': a connection has been lent for 10000 ms,"
        + " longer than leakDetectionThreshold (10000 ms)");
    for (int i = 0; i < 3; i++) {
      assertThat(firstFrame(log, i)).as("the user's line, past the pool's frames")
          .startsWith("at io.lagoon.AdversaryLeakTest"
              + ".eachWayToBorrowIsReportedWithItsOwnCallerAndItsReturnAtInfo(");
    }
  }

  @Test
  void oneMonoSubscribedThreeTimesReportsThreeLendsAtTheLineThatCalledCreate() {
    ConnectionPool pool = pool(b -> b.maxSize(3).leakDetectionThreshold(Duration.ofSeconds(1)));
    Mono<Connection> create = madeHere(pool);
    String log;
    try (CapturedLogs logs = CapturedLogs.start(false)) {
      List<Connection> held = new ArrayList<>();
      for (int i = 0; i < 3; i++) {
        held.add(borrow(create));
      }
      time.advanceTimeBy(Duration.ofSeconds(5));
      time.advanceTimeBy(Duration.ofSeconds(5));
      held.forEach(AdversaryLeakTest::close);
      log = logs.text();
    }
    assertThat(count(log, WARN_LENT)).as("each lend once, however long").isEqualTo(3);
    assertThat(count(log, INFO_BACK)).isEqualTo(3);
    for (int i = 0; i < 3; i++) {
      assertThat(firstFrame(log, i)).startsWith("at io.lagoon.AdversaryLeakTest.madeHere(");
    }
    assertThat(pool.stats().leaks()).isEqualTo(3);
  }

  private static Mono<Connection> madeHere(ConnectionPool pool) {
    return pool.create();
  }

  @Test
  void reportsFromAPoolBuiltFromAUrlWithAPasswordNeverShowThePassword() {
    String password = "Adv8-" + UUID.randomUUID();
    ConnectionFactoryOptions url = ConnectionFactoryOptions.parse(PostgresSupport.r2dbcUrl());
    String secret = url.getValue(ConnectionFactoryOptions.PASSWORD) != null
        ? String.valueOf(url.getValue(ConnectionFactoryOptions.PASSWORD)) : password;
    // A server with trust authentication never asks for the password: any one goes through.
    ConnectionPool pool = keep(LagoonConnectionFactoryProvider.builder(driverOptions()
            .option(ConnectionFactoryOptions.DRIVER, "lagoon")
            .option(ConnectionFactoryOptions.PROTOCOL, "postgresql")
            .option(ConnectionFactoryOptions.PASSWORD, secret)
            .option(Option.valueOf("leakDetectionThreshold"), "1s")
            .option(Option.valueOf("initialSize"), "0").build())
        .scheduler(time).build());
    String log;
    try (CapturedLogs logs = CapturedLogs.start(true)) {
      Connection held = borrow(pool.create());
      time.advanceTimeBy(Duration.ofSeconds(2));
      close(held);
      borrowAndForget(pool.create());
      collectUntilAbandoned(pool, 1);
      log = logs.text() + pool + pool.stats();
    }
    assertThat(log).contains(WARN_LENT, INFO_BACK, WARN_ABANDONED).doesNotContain(secret);
  }

  // ------------------------------------------------------------------ the pool's own work

  @Test
  void aConnectionThePoolValidatesOrResetsIsNeverReportedAndTheLendTimeExcludesThem()
      throws Exception {
    ConnectionPool pool = pool(b -> b.maxSize(1).leakDetectionThreshold(Duration.ofSeconds(1))
        .validationSkipWindow(Duration.ZERO).validationQuery(waitForLock())
        .preRelease(this::runWaitingForLock).maxValidationTime(Duration.ofSeconds(-1)));
    String log;
    try (CapturedLogs logs = CapturedLogs.start(false)) {
      close(borrow(pool.create())); // a connection, now idle
      lock();
      CompletableFuture<Connection> validated = pool.create().toFuture();
      awaitLockWaiter(); // the pool validates it for this acquire
      time.advanceTimeBy(Duration.ofSeconds(10)); // housekeeping every 500 ms
      assertThat(logs.text()).as("validating").doesNotContain(WARN_LENT);
      unlock();
      Connection c = validated.get(30, TimeUnit.SECONDS);
      time.advanceTimeBy(Duration.ofSeconds(1));
      assertThat(count(logs.text(), WARN_LENT)).isEqualTo(1);
      close(c);

      Connection d = borrow(pool.create());
      lock();
      CompletableFuture<Void> back = Mono.from(d.close()).toFuture();
      awaitLockWaiter(); // preRelease runs, before the reset
      time.advanceTimeBy(Duration.ofSeconds(10));
      assertThat(count(logs.text(), WARN_LENT)).as("resetting").isEqualTo(1);
      unlock();
      back.get(30, TimeUnit.SECONDS);
      log = logs.text();
    }
    assertThat(log).contains("a connection has been lent for 1000 ms");
    assertThat(pool.stats().leaks()).isEqualTo(1);
    assertThat(pool.stats().idle()).isEqualTo(1);
  }

  // ------------------------------------------------------------------ graceful close

  @Test
  void leaksHeldThroughAGracefulCloseAreReportedAndClosedWhenTheGraceEnds() throws Exception {
    ConnectionPool pool = pool(b -> b.maxSize(2).leakDetectionThreshold(Duration.ofSeconds(1)));
    String log;
    try (CapturedLogs logs = CapturedLogs.start(false)) {
      Connection early = borrow(pool.create());
      time.advanceTimeBy(Duration.ofSeconds(2));
      assertThat(count(logs.text(), WARN_LENT)).isEqualTo(1);
      Connection late = borrow(pool.create());
      CompletableFuture<Void> closed = pool.closeGracefully(Duration.ofSeconds(10)).toFuture();
      time.advanceTimeBy(Duration.ofSeconds(5));
      assertThat(closed).isNotDone();
      assertThat(one(late, "SELECT 1", Integer.class)).as("still the borrower's").isEqualTo(1);
      assertThat(count(logs.text(), WARN_LENT))
          .as("a lend that passes the threshold during the grace is still lent: reported")
          .isEqualTo(2);
      time.advanceTimeBy(Duration.ofSeconds(5));
      closed.get(30, TimeUnit.SECONDS);
      backends.awaitCount(app, 0, T);
      assertThatThrownBy(() -> late.createStatement("SELECT 1"))
          .isInstanceOf(IllegalStateException.class);
      close(early);
      close(late);
      log = logs.text();
    }
    assertThat(count(log, WARN_LENT)).isEqualTo(2);
    assertThat(log).as("taken away by the close, not given back").doesNotContain(INFO_BACK);
  }

  // ------------------------------------------------------------------ abandoned handles

  /** Ways to drop a delivered connection without closing it. */
  private Mono<?> drop(ConnectionPool pool, String how) {
    switch (how) {
      case "filter":
        return pool.create().filter(c -> false);
      case "map":
        return pool.create().map(c -> 1);
      case "then":
        return pool.create().then();
      case "flatMap error":
        return pool.create().flatMap(c -> Mono.error(new IllegalStateException("forgot close")))
            .onErrorResume(e -> Mono.empty());
      case "zip error":
        return Mono.zip(pool.create(), Mono.error(new IllegalStateException("other side")))
            .onErrorResume(e -> Mono.empty());
      default:
        throw new IllegalArgumentException(how);
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"filter", "map", "then", "flatMap error", "zip error"})
  void aDroppedConnectionIsTakenBackReportedWithItsBorrowSiteAndItsBackendClosed(String how) {
    ConnectionPool pool = pool(b -> b.maxSize(1).leakDetectionThreshold(Duration.ofHours(1)));
    close(borrow(pool.create())); // one idle connection: zip gets it at once
    List<Integer> first = backends.pids(app);
    assertThat(first).hasSize(1);
    String log;
    try (CapturedLogs logs = CapturedLogs.start(false)) {
      drop(pool, how).block(T);
      assertThat(pool.stats().acquired()).as("lent, and nobody can close it").isEqualTo(1);
      collectUntilAbandoned(pool, 1);
      log = logs.text();
    }
    backends.awaitCount(app, 0, T);
    assertThat(count(log, WARN_ABANDONED)).isEqualTo(1);
    assertThat(firstFrame(log, 0)).startsWith("at io.lagoon.AdversaryLeakTest.drop(");
    Connection next = borrow(pool.create());
    assertThat(pid(next)).as("a new backend, never the dropped one").isNotEqualTo(first.get(0));
    close(next);
    assertThat(pool.stats().leaks()).as("abandoned, not reported as lent too long").isZero();
  }

  @Test
  void takeZeroNeverAcquires() {
    ConnectionPool pool = pool(b -> b.maxSize(1));
    assertThat(Flux.from(pool.create()).take(0).collectList().block(T)).isEmpty();
    assertThat(pool.stats().acquires()).isZero();
    assertThat(pool.stats().acquired()).isZero();
    assertThat(pool.stats().pending()).isZero();
  }

  @Test
  void aHandleDroppedAfterThePoolClosedIsStillTakenBackAndItsBackendClosed() {
    ConnectionPool pool = pool(b -> b.maxSize(1).leakDetectionThreshold(Duration.ofHours(1)));
    String log;
    int dropped;
    try (CapturedLogs logs = CapturedLogs.start(false)) {
      dropped = borrowAndForget(pool.create());
      assertThat(pool.stats().acquired()).isEqualTo(1);
      pool.close().block(T); // completes: only a lent connection is left, closed when it comes back
      collectUntilAbandoned(pool, 1);
      log = logs.text();
    }
    backends.awaitCount(app, 0, T);
    assertThat(alive(dropped)).isFalse();
    assertThat(log).contains(WARN_ABANDONED, "it was borrowed here:");
  }

  @Test
  void aHandleDroppedDuringAGracefulCloseEndsTheCloseBeforeTheGrace() throws Exception {
    ConnectionPool pool = pool(b -> b.maxSize(1));
    borrowAndForget(pool.create());
    CompletableFuture<Void> closed = pool.closeGracefully(Duration.ofDays(1)).toFuture();
    collectUntilAbandoned(pool, 1);
    closed.get(30, TimeUnit.SECONDS);
    backends.awaitCount(app, 0, T);
  }

  /** Borrows a connection, reads its backend's pid and forgets it without close(). */
  private static int borrowAndForget(Mono<Connection> create) {
    return pid(borrow(create));
  }

  private boolean alive(int pid) {
    return backends.pids(app).contains(pid);
  }

  // ------------------------------------------------------------------ pool closes mid-way

  @Test
  void closingThePoolWhileItValidatesForAWaiterFailsTheWaiterAndClosesTheConnection()
      throws Exception {
    ConnectionPool pool = pool(b -> b.maxSize(1).validationSkipWindow(Duration.ZERO)
        .validationQuery(waitForLock()).maxValidationTime(Duration.ofSeconds(-1)));
    close(borrow(pool.create()));
    lock();
    CompletableFuture<Connection> waiting = pool.create().toFuture();
    awaitLockWaiter();
    CompletableFuture<Void> closed = pool.close().toFuture();
    unlock();
    assertThatThrownBy(() -> waiting.get(30, TimeUnit.SECONDS))
        .hasCauseInstanceOf(PoolClosedException.class);
    closed.get(30, TimeUnit.SECONDS);
    backends.awaitCount(app, 0, T);
  }

  @Test
  void closingThePoolWhileItResetsAReturnedConnectionClosesIt() throws Exception {
    ConnectionPool pool = pool(b -> b.maxSize(1).preRelease(this::runWaitingForLock)
        .maxValidationTime(Duration.ofSeconds(-1)));
    Connection c = borrow(pool.create());
    exec(c, "SET work_mem = '7MB'"); // a reset is due too
    lock();
    CompletableFuture<Void> back = Mono.from(c.close()).toFuture();
    awaitLockWaiter();
    CompletableFuture<Void> closed = pool.close().toFuture();
    unlock();
    back.get(30, TimeUnit.SECONDS);
    closed.get(30, TimeUnit.SECONDS);
    backends.awaitCount(app, 0, T);
    assertThat(pool.stats().idle()).isZero();
  }

  @Test
  void closingThePoolWhileAConnectHangsLeavesNoConnectionBehind() throws Exception {
    try (FaultProxy proxy = FaultProxy.toPostgres()) {
      proxy.blackHole(true);
      ConnectionPool pool = keep(ConnectionPool.builder(
              ConnectionFactories.get(proxy.postgresOptions(app)))
          .initialSize(0).maxSize(1).scheduler(time).maxAcquireTime(T).build());
      CompletableFuture<Connection> waiting = pool.create().toFuture();
      Await.until("the connect reached the proxy", () -> proxy.accepted() == 1);
      CompletableFuture<Void> closed = pool.close().toFuture();
      assertThatThrownBy(() -> waiting.get(30, TimeUnit.SECONDS))
          .hasCauseInstanceOf(PoolClosedException.class);
      time.advanceTimeBy(Duration.ofSeconds(10)); // maxCreateConnectionTime: the connect gives up
      time.advanceTimeBy(Duration.ofSeconds(5)); // maxCloseTime: its slot is freed
      closed.get(30, TimeUnit.SECONDS);
      proxy.heal(); // what the black hole held goes through now
      Await.until("no connection left open through the proxy", () -> proxy.openConnections() == 0);
      backends.awaitCount(app, 0, T);
    }
  }

  // ------------------------------------------------------------------ killed backends

  @Test
  void backendsKilledWhileIdleAreNeverLentWithRemoteValidation() {
    ConnectionPool pool = pool(b -> b.maxSize(2).validationSkipWindow(Duration.ZERO)
        .validationDepth(ValidationDepth.REMOTE));
    Connection a = borrow(pool.create());
    Connection b = borrow(pool.create());
    close(a);
    close(b);
    List<Integer> killed = backends.pids(app);
    assertThat(killed).hasSize(2);
    assertThat(backends.terminateAll(app, Duration.ofSeconds(10)).values()).containsOnly(true);
    Connection c = borrow(pool.create());
    Connection d = borrow(pool.create());
    assertThat(List.of(pid(c), pid(d))).doesNotContainAnyElementsOf(killed).doesNotHaveDuplicates();
    close(c);
    close(d);
  }

  @Test
  void aConnectionWhoseBackendWasKilledWhileLentIsNotHandedToTheNextWaiter() throws Exception {
    ConnectionPool pool = pool(b -> b.maxSize(1));
    Connection held = borrow(pool.create());
    int killed = pid(held);
    CompletableFuture<Connection> waiting = pool.create().toFuture();
    Await.until("queued", () -> pool.stats().pending() == 1);
    assertThat(backends.terminate(app, List.of(killed), Duration.ofSeconds(10))).containsValue(true);
    Connection physical = Peek.physical(held);
    Await.until("the driver knows it is closed", () -> Boolean.FALSE.equals(
        Mono.from(physical.validate(ValidationDepth.LOCAL)).block(T)));
    close(held); // the borrower never noticed
    Connection next = waiting.get(30, TimeUnit.SECONDS);
    assertThat(pid(next)).as("the waiter gets a working connection").isNotEqualTo(killed);
    close(next);
  }

  @Test
  @Disabled("a validation the pool gave up on keeps running on the server (no cancel request is"
      + " sent), so the server holds a backend beyond maxSize until that query ends")
  void aValidationThatTimesOutOnTheServerLeavesNoBackendBeyondMaxSize() throws Exception {
    ConnectionPool pool = pool(b -> b.maxSize(1).validationSkipWindow(Duration.ZERO)
        .validationQuery(waitForLock()).maxValidationTime(Duration.ofSeconds(2)));
    close(borrow(pool.create()));
    lock();
    CompletableFuture<Connection> waiting = pool.create().toFuture();
    awaitLockWaiter();
    time.advanceTimeBy(Duration.ofSeconds(2)); // the validation times out: closed and replaced
    Connection c = waiting.get(30, TimeUnit.SECONDS);
    int fresh = pid(c);
    List<Integer> seen = backends.pids(app);
    assertThat(seen).as("backends of a pool of 1 while the timed-out validation's backend still"
        + " waits for the lock (the new one is %s)", fresh).containsExactly(fresh);
    close(c);
  }

  @Test
  @Disabled("a query its borrower cancelled keeps running on the server (no cancel request is"
      + " sent) and the pool lends the connection again at once: the next borrower waits")
  void theNextBorrowerDoesNotWaitForAQueryItsBorrowerCancelled() {
    ConnectionPool pool = pool(b -> b.maxSize(1));
    lock();
    Disposable slow = pool.withConnection(this::runWaitingForLock).subscribe();
    awaitLockWaiter();
    slow.dispose(); // the borrower gives up on its query
    Integer one = pool.withConnection(c -> Flux.from(c.createStatement("SELECT 1").execute())
            .flatMap(r -> r.map((row, meta) -> row.get(0, Integer.class))))
        .blockLast(Duration.ofSeconds(10)); // throws if the borrower still waits then
    assertThat(one).isEqualTo(1);
    assertThat(backends.count(app)).as("backends of a pool of 1").isLessThanOrEqualTo(1);
  }

  @Test
  @Disabled("r2dbc-postgresql 1.1.1: a result cancelled from another thread before its rows"
      + " arrive wedges the connection; the pool lends it again and the next query never ends")
  void aResultCancelledFromAnotherThreadDoesNotHangTheNextBorrower() {
    ConnectionPool pool = pool(b -> b.maxSize(1));
    for (int i = 0; i < 10; i++) {
      pool.withConnection(c -> Flux.from(c.createStatement("SELECT generate_series(1, 20000)")
              .execute()).flatMap(r -> r.map((row, meta) -> 1)))
          .take(Duration.ofNanos(1_000), Schedulers.parallel()) // the cancel comes from a timer
          .blockLast(T);
      assertThat(pool.withConnection(c -> Flux.from(c.createStatement("SELECT 1").execute())
              .flatMap(r -> r.map((row, meta) -> row.get(0, Integer.class))))
          .blockLast(Duration.ofSeconds(10))).as("round %s", i).isEqualTo(1);
    }
  }

  // ------------------------------------------------------------------ under load

  private ConnectionPool realTimePool(UnaryOperator<ConnectionPoolBuilder> config) {
    return keep(config.apply(ConnectionPool.builder(driver()).initialSize(0).maxAcquireTime(T)
        .poolName("advleak-" + tag).backgroundEvictionInterval(Duration.ofMillis(100))).build());
  }

  /** Collects garbage until nothing is lent or waiting any more (abandoned handles come back). */
  private static void awaitQuiet(ConnectionPool pool) {
    Await.until("nothing lent or pending: " + pool.stats(), () -> {
      System.gc();
      PoolStats s = pool.stats();
      return s.acquired() == 0 && s.pending() == 0;
    });
  }

  @Test
  void cancellingAtEveryMomentUnderLoadLosesNoConnectionAndLendsNoneTwice() {
    PidNotingDriver driver = new PidNotingDriver();
    ConnectionPool pool = keep(ConnectionPool.builder(driver).initialSize(0).maxSize(3)
        .maxAcquireTime(T).poolName("advleak-" + tag)
        .backgroundEvictionInterval(Duration.ofMillis(100)).build());
    Set<Connection> lent = ConcurrentHashMap.newKeySet();
    AtomicInteger twice = new AtomicInteger();
    AtomicInteger served = new AtomicInteger();
    AtomicInteger failed = new AtomicInteger();
    // Uses a delivered connection and closes it however the work ends, cancellation included;
    // notes which physical connection it holds meanwhile, to see one lent to two at once.
    Function<Connection, Mono<Integer>> use = c -> {
      Connection p = Peek.physical(c);
      if (!lent.add(p)) {
        twice.incrementAndGet();
      }
      Function<Connection, Mono<Void>> giveBack = x -> {
        lent.remove(p);
        return Mono.from(x.close());
      };
      return Mono.usingWhen(Mono.just(c), x -> Flux.from(x.createStatement("SELECT 1").execute())
              .flatMap(r -> r.map((row, meta) -> row.get(0, Integer.class))).last()
              .doOnSuccess(v -> served.incrementAndGet()),
          giveBack, (x, e) -> giveBack.apply(x), giveBack)
          .onErrorResume(e -> Mono.empty());
    };
    int operations = 3_000;
    String log;
    // Timeouts drop some connections as they arrive (Reactor discards them): the pool takes them
    // back after a garbage collection. A busy application collects often; this test allocates
    // little, so it collects every 100 ms.
    Disposable collector = Flux.interval(Duration.ofMillis(100), Schedulers.boundedElastic())
        .subscribe(t -> System.gc());
    BackendWatch watch = new BackendWatch(driver.closed, 3);
    try (watch; CapturedLogs logs = CapturedLogs.start(false)) {
      Flux.range(0, operations).flatMap(i -> {
        ThreadLocalRandom random = ThreadLocalRandom.current();
        Duration soon = Duration.ofNanos(random.nextLong(1_000, 2_000_000));
        switch (i % 6) {
          case 0: // cancelled at once, from the subscribing thread
            pool.create().flatMap(use).subscribe().dispose();
            return Mono.empty();
          case 1: // cancelled from another thread, at a random moment
            Disposable d = pool.create().flatMap(use).subscribe();
            Schedulers.parallel().schedule(d::dispose, soon.toNanos(), TimeUnit.NANOSECONDS);
            return Mono.empty();
          case 2: // a timeout racing the delivery (Reactor drops a connection that loses)
            return pool.create().timeout(soon).flatMap(use)
                .onErrorResume(TimeoutException.class, e -> Mono.empty());
          case 3: // cancelled while the rows stream, after a random number of rows (a cancel
                  // from another thread before the rows arrive wedges the driver's connection:
                  // see aResultCancelledFromAnotherThreadDoesNotHangTheNextBorrower)
            return pool.withConnection(c -> Flux.from(c.createStatement(
                    "SELECT generate_series(1, 20000)").execute())
                .flatMap(r -> r.map((row, meta) -> 1))).take(random.nextInt(1, 5_000)).then()
                .onErrorResume(e -> {
                  failed.incrementAndGet();
                  return Mono.empty();
                });
          case 4: // a transaction cancelled at a random moment
            return pool.inTransaction(c -> Flux.from(c.createStatement(
                    "SELECT pg_sleep(0.001)").execute()).flatMap(Result::getRowsUpdated))
                .timeout(soon).onErrorResume(e -> {
                  failed.incrementAndGet();
                  return Mono.empty();
                }).then();
          default:
            return pool.create().flatMap(use);
        }
      }, 16).blockLast(Duration.ofMinutes(2));
      awaitQuiet(pool);
      Await.until("one warning per abandoned connection", () -> count(logs.text(), WARN_ABANDONED)
          == pool.stats().abandoned()); // the count moves just before the warning is written
      log = logs.text();
    } finally {
      collector.dispose();
    }
    PoolStats s = pool.stats();
    System.out.println("[adversary] cancellation storm on PostgreSQL, pool of 3: " + operations
        + " operations, " + served + " served, " + failed + " failed; at most " + watch.maxCounted
        + " backends the pool had not closed, at most " + watch.maxSeen + " on the server ("
        + watch.pollsBeyond + " of " + watch.polls + " polls beyond 3); WARNs for abandoned "
        + count(log, WARN_ABANDONED) + "; " + s);
    assertThat(twice).as("a connection lent to two subscribers at once").hasValue(0);
    assertThat(watch.maxCounted.get()).as("backends of connections open, opening or closing")
        .isLessThanOrEqualTo(3);
    assertThat(count(log, WARN_ABANDONED)).as("one warning per abandoned connection")
        .isEqualTo(s.abandoned());
    assertThat(pool.create().flatMap(c -> Mono.from(c.close()).thenReturn(1)).block(T))
        .isEqualTo(1);
  }

  /**
   * The driver seen from below the pool: each connection learns its backend's pid when it opens,
   * and the pid is noted once the driver's close() completed, from which moment the pool no
   * longer counts it (its slot is free) while the server may still be ending that backend.
   */
  private final class PidNotingDriver implements ConnectionFactory {
    final ConnectionFactory real = driver();
    final Set<Integer> closed = ConcurrentHashMap.newKeySet();

    @Override
    public Mono<Connection> create() {
      return Mono.from(real.create()).flatMap(c -> Mono.from(c.createStatement(
              "SELECT pg_backend_pid()").execute())
          .flatMap(r -> Mono.from(r.map((row, meta) -> row.get(0, Integer.class))))
          .map(pid -> noting(c, pid)));
    }

    private Connection noting(Connection c, int pid) {
      return (Connection) Proxy.newProxyInstance(
          Connection.class.getClassLoader(), new Class<?>[] {Connection.class},
          (proxy, method, args) -> {
            try {
              Object out = method.invoke(c, args);
              return method.getName().equals("close")
                  ? Mono.from((Publisher<?>) out).then()
                      .doOnSuccess(v -> closed.add(pid)).doOnError(e -> closed.add(pid))
                  : out;
            } catch (InvocationTargetException e) {
              throw e.getCause();
            }
          });
    }

    @Override
    public ConnectionFactoryMetadata getMetadata() {
      return real.getMetadata();
    }
  }

  /**
   * Polls this test's backends every 2 ms: the most the server showed, and the most the pool
   * still counted: backends whose client-side close had not completed when the poll's answer
   * came back (a poll takes about a millisecond, so an excess shorter than that could escape).
   */
  private final class BackendWatch implements AutoCloseable {
    final Connection monitor = Mono.from(PostgresSupport.connectionFactory().create()).block(T);
    final AtomicInteger maxSeen = new AtomicInteger();
    final AtomicInteger maxCounted = new AtomicInteger();
    final AtomicInteger polls = new AtomicInteger();
    final AtomicInteger pollsBeyond = new AtomicInteger();
    final AtomicReference<Throwable> error = new AtomicReference<>();
    final Disposable poll;

    BackendWatch(Set<Integer> closed, int maxSize) {
      poll = Flux.interval(Duration.ofMillis(2), Schedulers.boundedElastic())
          .onBackpressureDrop()
          .concatMap(tick -> Flux.from(monitor.createStatement("SELECT pid FROM"
                    + " pg_stat_activity WHERE application_name = '" + app + "'").execute())
                .flatMap(r -> r.map((row, meta) -> row.get(0, Integer.class)))
                .collectList()
                .doOnNext(pids -> {
                  maxSeen.accumulateAndGet(pids.size(), Math::max);
                  int counted = (int) pids.stream().filter(p -> !closed.contains(p)).count();
                  maxCounted.accumulateAndGet(counted, Math::max);
                  if (pids.size() > maxSize) {
                    pollsBeyond.incrementAndGet();
                  }
                  polls.incrementAndGet();
                }), 1)
          .subscribe(null, error::set);
    }

    @Override
    public void close() {
      poll.dispose();
      Mono.from(monitor.close()).block(T);
      assertThat(error.get()).as("polling failed").isNull();
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"reset", "stream", "self-kill", "lifetime"})
  void neverMoreBackendsThanMaxSizeThatThePoolHasNotClosedWhileConnectionsChurn(String churn) {
    churn(churn, false);
  }

  @Test
  @Disabled("server-side lag: a backend whose client closed mid-result runs on until it notices,"
      + " while the pool already opened its replacement")
  void neverMoreBackendsThanMaxSizeOnTheServerWhileStreamsLeftOpenReplaceConnections() {
    churn("stream", true);
  }

  /**
   * 1,000 operations, 32 at a time, on a pool of 4, half of them replacing or resetting their
   * connection as {@code churn} says; the server's backends are polled all along.
   */
  private void churn(String churn, boolean asSeenByTheServer) {
    int maxSize = 4;
    PidNotingDriver driver = new PidNotingDriver();
    ConnectionPool pool = keep(ConnectionPool.builder(driver).initialSize(0).maxSize(maxSize)
        .maxAcquireTime(T).poolName("advleak-" + tag)
        .maxLifeTime(churn.equals("lifetime") ? Duration.ofMillis(100) : Duration.ofMinutes(30))
        .build());
    int operations = 1_000;
    AtomicInteger failed = new AtomicInteger();
    BackendWatch watch = new BackendWatch(driver.closed, maxSize);
    try (watch) {
      Flux.range(0, operations).flatMap(i -> {
        Flux<Integer> work;
        switch (i % 2 == 0 ? churn : "plain") {
          case "reset": // a changed session: reset on release
            work = pool.withConnection(c -> Flux.from(c.createStatement("SET work_mem = '5MB'")
                .execute()).flatMap(Result::getRowsUpdated).map(Long::intValue));
            break;
          case "stream": // a stream left open: the connection is replaced
            work = pool.withConnection(c -> Flux.from(c.createStatement(
                    "SELECT generate_series(1, 100000)").execute())
                .flatMap(r -> r.map((row, meta) -> 1))).take(1);
            break;
          case "self-kill": // the borrower's backend ends itself: broken, replaced
            work = pool.withConnection(c -> Flux.from(c.createStatement(
                    "SELECT pg_terminate_backend(pg_backend_pid())").execute())
                .flatMap(r -> r.map((row, meta) -> 1)));
            break;
          default: // plain work; slow enough, with "lifetime", for connections to retire
            work = pool.withConnection(c -> Flux.from(c.createStatement(churn.equals("lifetime")
                    ? "SELECT pg_sleep(0.002)" : "SELECT 1").execute())
                .flatMap(r -> r.map((row, meta) -> 1)));
        }
        return work.onErrorResume(e -> {
          failed.incrementAndGet();
          return Mono.empty();
        });
      }, 32).blockLast(Duration.ofMinutes(2));
      awaitQuiet(pool);
    }
    PoolStats s = pool.stats();
    System.out.println("[adversary] churn (" + churn + ") on PostgreSQL, pool of " + maxSize
        + ": " + operations + " operations, " + failed + " failed, " + watch.polls
        + " polls of pg_stat_activity; at most " + watch.maxCounted + " backends the pool had"
        + " not closed, at most " + watch.maxSeen + " on the server (" + watch.pollsBeyond
        + " polls beyond " + maxSize + "); " + s);
    assertThat(s.created()).as("connections were replaced")
        .isGreaterThan(churn.equals("reset") ? 0 : maxSize);
    assertThat(watch.maxCounted.get()).as("backends of connections open, opening or closing")
        .isLessThanOrEqualTo(maxSize);
    if (asSeenByTheServer) {
      assertThat(watch.maxSeen.get()).as("backends on the server").isLessThanOrEqualTo(maxSize);
    }
  }
}
