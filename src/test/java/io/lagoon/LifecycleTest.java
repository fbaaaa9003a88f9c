package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.FakeConnection;
import io.lagoon.testing.FakeConnectionFactory;
import io.lagoon.testing.FakeSqlException;
import io.lagoon.testing.TickingVirtualTime;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryMetadata;
import io.r2dbc.spi.IsolationLevel;
import io.r2dbc.spi.R2dbcNonTransientResourceException;
import io.r2dbc.spi.R2dbcTransientResourceException;
import io.r2dbc.spi.ValidationDepth;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.test.StepVerifier;

/** Validation, reset on release, dead connections, retirement, keepalive, recovery: in virtual time. */
class LifecycleTest extends PoolFixture {

  LifecycleTest() {
    super("life");
  }

  private static void run(Connection c, String sql) {
    Flux.from(c.createStatement(sql).execute()).flatMap(r -> r.getRowsUpdated()).blockLast();
  }

  // ------------------------------------------------------------------ 1. validation on borrow

  @Test
  void aConnectionUsedWithinTheSkipWindowIsLentAfterOnlyTheLocalCheck() {
    ConnectionPool pool = pool(b -> b.maxSize(1).validationQuery("SELECT 1"));
    Borrower first = Borrower.borrow(pool.create());
    FakeConnection physical = first.physical();
    first.release();
    int opsBefore = physical.operations().size();
    time.advanceTimeBy(Duration.ofMillis(400));
    Borrower second = Borrower.borrow(pool.create());
    assertThat(second.physical()).isSameAs(physical);
    assertThat(physical.validations()).as("the local check, on every borrow").isEqualTo(1);
    assertThat(physical.lastValidationDepth()).isEqualTo(ValidationDepth.LOCAL);
    assertThat(physical.operations()).as("no validation query within the window")
        .hasSize(opsBefore);
    second.release();
  }

  @Test
  void aConnectionTheDriverReportsClosedIsNeverLentEvenWithinTheSkipWindow() {
    ConnectionPool pool = pool(b -> b.maxSize(2));
    Borrower first = Borrower.borrow(pool.create());
    FakeConnection dead = first.physical();
    first.release();
    dead.breakConnection(); // the server went away a moment after the connection was used
    Borrower second = Borrower.borrow(pool.create());
    assertThat(second.error()).isNull();
    assertThat(second.physical()).isNotSameAs(dead);
    assertThat(dead.isClosed()).as("closed, not parked again").isTrue();
    second.release();
  }

  @Test
  void aConnectionThatFailsValidationIsClosedAndTheBorrowerGetsAnotherWithoutAnError() {
    ConnectionPool pool = pool(b -> b.maxSize(2));
    Borrower a = Borrower.borrow(pool.create());
    FakeConnection dead = a.physical();
    a.release();
    time.advanceTimeBy(Duration.ofSeconds(1)); // past the 500 ms skip window
    dead.breakConnection();
    Borrower b = Borrower.borrow(pool.create());
    assertThat(b.error()).isNull();
    assertThat(b.physical()).isNotSameAs(dead);
    assertThat(dead.validations()).isEqualTo(1);
    assertThat(dead.isClosed()).isTrue();
    assertThat(pool.stats().allocated()).isEqualTo(1);
    b.release();
  }

  @Test
  void aValidationQueryThatHangsCountsAsFailedAfterMaxValidationTime() {
    ConnectionPool pool = pool(b -> b.maxSize(2).validationQuery("SELECT 1")
        .maxValidationTime(Duration.ofSeconds(2)).maxAcquireTime(Duration.ofSeconds(10)));
    Borrower a = Borrower.borrow(pool.create());
    FakeConnection stuck = a.physical();
    a.release();
    time.advanceTimeBy(Duration.ofSeconds(1));
    driver.connectLatency(Duration.ofMillis(1));
    stuck.failNextStatement(new R2dbcTransientResourceException("slow")); // validation query fails
    Borrower b = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofMillis(1));
    assertThat(b.got()).isTrue();
    assertThat(b.physical()).isNotSameAs(stuck);
    assertThat(stuck.executedSql()).containsExactly("SELECT 1");
    assertThat(stuck.isClosed()).isTrue();
  }

  @Test
  void aZeroSkipWindowValidatesEveryBorrowAndTheBorrowerWaitsForTheReplacement() {
    ConnectionPool pool = pool(b -> b.maxSize(1).maxAcquireTime(Duration.ofSeconds(3))
        .validationSkipWindow(Duration.ZERO));
    Borrower a = Borrower.borrow(pool.create());
    a.physical().breakConnection();
    a.release(); // validated on the next borrow because the skip window is zero
    driver.connectLatency(Duration.ofSeconds(1));
    Borrower b = Borrower.borrow(pool.create());
    assertThat(b.got()).isFalse();
    time.advanceTimeBy(Duration.ofSeconds(1));
    assertThat(b.got()).isTrue(); // the replacement
    b.release();
  }

  /** Uses a connection, gives it back, lets the skip window pass and makes its next check hang. */
  private FakeConnection idleConnectionWhoseValidationHangs(ConnectionPool pool) {
    Borrower a = Borrower.borrow(pool.create());
    FakeConnection stuck = a.physical();
    a.release();
    time.advanceTimeBy(Duration.ofSeconds(1));
    return stuck.hangValidation(true);
  }

  @Test
  void aHangingValidationCountsAsFailedAfterMaxValidationTime() {
    ConnectionPool pool = pool(b -> b.maxSize(2).maxValidationTime(Duration.ofSeconds(2))
        .maxAcquireTime(Duration.ofSeconds(10)));
    FakeConnection stuck = idleConnectionWhoseValidationHangs(pool);
    Borrower b = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofMillis(1999));
    assertThat(b.got()).isFalse();
    assertThat(stuck.isClosed()).isFalse();
    time.advanceTimeBy(Duration.ofMillis(1));
    assertThat(stuck.isClosed()).isTrue();
    assertThat(b.physical()).isNotSameAs(stuck);
  }

  @Test
  void theAcquireDeadlineCoversAHangingValidation() {
    ConnectionPool pool = pool(b -> b.maxSize(1).maxValidationTime(Duration.ofSeconds(10))
        .maxAcquireTime(Duration.ofSeconds(3)));
    FakeConnection stuck = idleConnectionWhoseValidationHangs(pool);
    Borrower b = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofMillis(2999));
    assertThat(b.error()).isNull();
    time.advanceTimeBy(Duration.ofMillis(1));
    assertThat(b.error()).isInstanceOf(PoolAcquireTimeoutException.class)
        .hasMessageContaining("waited 3000 ms");
    time.advanceTimeBy(Duration.ofSeconds(7)); // the validation gives up: closed, not pooled
    assertThat(stuck.isClosed()).isTrue();
    assertThat(pool.stats().idle()).isZero();
  }

  @Test
  void validationDepthAndQueryReachTheDriver() {
    ConnectionPool pool = pool(b -> b.maxSize(1).validationDepth(ValidationDepth.REMOTE));
    Borrower a = Borrower.borrow(pool.create());
    FakeConnection physical = a.physical();
    a.release();
    time.advanceTimeBy(Duration.ofSeconds(1));
    Borrower b = Borrower.borrow(pool.create());
    assertThat(physical.lastValidationDepth()).isEqualTo(ValidationDepth.REMOTE);
    b.release();
  }

  // ------------------------------------------------------------------ 2. reset on release

  @Test
  void anUntouchedConnectionIsReturnedWithoutAnyResetStatement() {
    ConnectionPool pool = pool(b -> b.maxSize(1));
    Borrower a = Borrower.borrow(pool.create());
    run(a.connection(), "SELECT 1");
    FakeConnection physical = a.physical();
    int ops = physical.operations().size();
    a.release();
    assertThat(physical.operations()).hasSize(ops);
  }

  @Test
  void anOpenTransactionIsRolledBackWhicheverWayItWasStarted() {
    ConnectionPool pool = pool(b -> b.maxSize(1));
    for (String how : List.of("beginTransaction", "setAutoCommit(false)", "BEGIN")) {
      Borrower a = Borrower.borrow(pool.create());
      Connection c = a.connection();
      FakeConnection physical = a.physical();
      switch (how) {
        case "beginTransaction" -> Mono.from(c.beginTransaction()).block();
        case "setAutoCommit(false)" -> Mono.from(c.setAutoCommit(false)).block();
        default -> run(c, "BEGIN");
      }
      run(c, "INSERT INTO t VALUES (1)");
      assertThat(physical.isTransactionActive()).as(how).isTrue();
      a.release();
      assertThat(physical.isTransactionActive()).as(how).isFalse();
      assertThat(physical.autoCommit()).as(how).isTrue();
      assertThat(physical.operations()).as(how).contains("rollbackTransaction");
      assertThat(pool.stats().idle()).isEqualTo(1);
    }
  }

  @Test
  void theIsolationLevelReturnsToItsInitialValueHoweverItWasChanged() {
    ConnectionPool pool = pool(b -> b.maxSize(1));
    Borrower a = Borrower.borrow(pool.create());
    FakeConnection physical = a.physical();
    Mono.from(a.connection().setTransactionIsolationLevel(IsolationLevel.SERIALIZABLE)).block();
    int before = physical.operations().size();
    a.release();
    assertThat(physical.isolationLevel()).isEqualTo(IsolationLevel.READ_COMMITTED);
    assertThat(physical.operations().subList(before, physical.operations().size()))
        .containsExactly("setTransactionIsolationLevel(READ COMMITTED)");

    Borrower b = Borrower.borrow(pool.create());
    assertThat(b.physical()).isSameAs(physical);
    // behind the handle's back, on a driver without a session reset statement: anything may have
    // changed, so the connection is replaced rather than trusted
    Mono.from(((io.r2dbc.spi.Wrapped<?>) b.connection()).unwrap() instanceof Connection raw
        ? raw.setTransactionIsolationLevel(IsolationLevel.REPEATABLE_READ) : Mono.empty()).block();
    b.release();
    assertThat(physical.isClosed()).isTrue();
    Borrower c = Borrower.borrow(pool.create());
    assertThat(c.physical()).isNotSameAs(physical);
    assertThat(c.physical().isolationLevel()).isEqualTo(IsolationLevel.READ_COMMITTED);
    c.release();
  }

  @Test
  void changedTimeoutsOnADriverWithoutAResetStatementReplaceTheConnection() {
    // The SPI cannot read a connection's timeouts back: without a reset statement (PostgreSQL
    // has one), the only way to give the next borrower the initial values is a new connection.
    for (String how : List.of("setStatementTimeout", "setLockWaitTimeout", "SET")) {
      ConnectionPool pool = pool(b -> b.maxSize(1));
      Borrower a = Borrower.borrow(pool.create());
      FakeConnection physical = a.physical();
      switch (how) {
        case "setStatementTimeout" ->
            Mono.from(a.connection().setStatementTimeout(Duration.ofSeconds(3))).block();
        case "setLockWaitTimeout" ->
            Mono.from(a.connection().setLockWaitTimeout(Duration.ofSeconds(3))).block();
        default -> run(a.connection(), "SET lock_timeout = 5");
      }
      a.release();
      assertThat(physical.isClosed()).as(how).isTrue();
      Borrower b = Borrower.borrow(pool.create());
      assertThat(b.physical()).as(how).isNotSameAs(physical);
      b.release();
      assertThat(pool.stats().closed()).as(how).isEqualTo(1);
    }
  }

  @Test
  void aChangePublisherNeverSubscribedLeavesNothingToReset() {
    ConnectionPool pool = pool(b -> b.maxSize(1));
    Borrower a = Borrower.borrow(pool.create());
    FakeConnection physical = a.physical();
    a.connection().setStatementTimeout(Duration.ofSeconds(3)); // obtained, never subscribed
    a.connection().beginTransaction();
    int before = physical.operations().size();
    a.release();
    assertThat(physical.isClosed()).isFalse();
    assertThat(physical.operations()).hasSize(before);
  }

  @Test
  void aDriverThatThrowsWhileTheConnectionIsReturnedFreesTheSlot() {
    ConnectionPool pool = pool(b -> b.maxSize(1));
    Borrower a = Borrower.borrow(pool.create());
    FakeConnection physical = a.physical();
    Mono.from(physical.close()).block(); // behind the pool's back: isAutoCommit() now throws
    a.release();
    Borrower b = Borrower.borrow(pool.create());
    assertThat(b.error()).isNull();
    assertThat(b.physical()).isNotSameAs(physical);
    b.release();
  }

  @Test
  void aFailedCommitNeverReturnsAnOpenTransactionToThePool() {
    ConnectionPool pool = pool(b -> b.maxSize(1).initialSize(1));
    FakeConnection physical = driver.connections().get(0);
    physical.failNextCommit(new R2dbcTransientResourceException("serialization failure", "40001"));
    StepVerifier.create(pool.inTransaction(c -> Flux.from(c.createStatement("INSERT").execute())
        .flatMap(r -> r.getRowsUpdated()))).expectNext(0L)
        .expectError(R2dbcTransientResourceException.class)
        .verify(Duration.ofSeconds(5));
    assertThat(pool.stats().idle()).isEqualTo(1);
    Borrower b = Borrower.borrow(pool.create());
    assertThat(b.physical()).isSameAs(physical);
    assertThat(physical.isTransactionActive()).isFalse();
    assertThat(b.connection().isAutoCommit()).isTrue();
    b.release();
  }

  @Test
  void aResetThatFailsClosesTheConnectionAndItIsNeverLentAgain() {
    ConnectionPool pool = pool(b -> b.maxSize(1));
    Borrower a = Borrower.borrow(pool.create());
    FakeConnection physical = a.physical();
    Mono.from(a.connection().beginTransaction()).block();
    physical.breakConnection(); // the rollback will fail
    a.release();
    assertThat(physical.isClosed()).isTrue();
    Borrower b = Borrower.borrow(pool.create());
    assertThat(b.physical()).isNotSameAs(physical);
    b.release();
  }

  @Test
  void aResetThatHangsIsAbandonedAfterMaxValidationTimeAndTheConnectionReplaced() {
    ConnectionPool pool = pool(b -> b.maxSize(1).maxValidationTime(Duration.ofSeconds(2))
        .preRelease(c -> Mono.never()));
    Borrower a = Borrower.borrow(pool.create());
    FakeConnection physical = a.physical();
    Mono<Void> close = Mono.from(a.connection().close());
    Borrower waiter = Borrower.borrow(pool.create());
    close.subscribe();
    assertThat(waiter.got()).isFalse();
    time.advanceTimeBy(Duration.ofSeconds(2));
    assertThat(physical.isClosed()).isTrue();
    assertThat(waiter.got()).isTrue();
    assertThat(waiter.physical()).isNotSameAs(physical);
  }

  // ------------------------------------------------------------------ 3. dead connections

  @Test
  void anErrorThatMeansTheConnectionIsGoneMarksItBrokenAndItIsClosedOnRelease() {
    List<Throwable> deadly = List.of(
        new FakeSqlException("terminating connection due to administrator command", "57P01"),
        new FakeSqlException("connection failure", "08006"),
        new FakeSqlException("connection does not exist", "08003"),
        new FakeSqlException("crash shutdown", "57P02"),
        new FakeSqlException("cannot connect now", "57P03"),
        new FakeSqlException("idle session timeout", "57P05"),
        new FakeSqlException("idle-in-transaction timeout", "25P03"),
        new R2dbcNonTransientResourceException("socket closed"));
    ConnectionPool pool = pool(b -> b.maxSize(1));
    for (Throwable error : deadly) {
      Borrower a = Borrower.borrow(pool.create());
      FakeConnection physical = a.physical();
      physical.failNextStatement(error);
      StepVerifier.create(Flux.from(a.connection().createStatement("SELECT 1").execute()))
          .expectError().verify();
      a.release();
      assertThat(physical.isClosed()).as(error.toString()).isTrue();
    }
  }

  @Test
  void anOrdinaryErrorLeavesTheConnectionInThePool() {
    ConnectionPool pool = pool(b -> b.maxSize(1));
    Borrower a = Borrower.borrow(pool.create());
    FakeConnection physical = a.physical();
    physical.failNextStatement(new FakeSqlException("duplicate key", "23505"));
    StepVerifier.create(Flux.from(a.connection().createStatement("INSERT").execute()))
        .expectError().verify();
    a.release();
    assertThat(physical.isClosed()).isFalse();
    assertThat(pool.stats().idle()).isEqualTo(1);
  }

  @org.junit.jupiter.params.ParameterizedTest
  @org.junit.jupiter.params.provider.ValueSource(strings = {"P0001", "57014", "55P03", "25P02"})
  void aSqlErrorRaisedAsANonTransientResourceErrorLeavesTheConnectionInThePool(String sqlState) {
    // r2dbc-postgresql raises these (RAISE EXCEPTION, statement timeout, NOWAIT, aborted
    // transaction) as R2dbcNonTransientResourceException: the SQLSTATE says the connection works
    ConnectionPool pool = pool(b -> b.maxSize(1));
    Borrower a = Borrower.borrow(pool.create());
    FakeConnection physical = a.physical();
    physical.failNextStatement(
        new R2dbcNonTransientResourceException("server error " + sqlState, sqlState));
    StepVerifier.create(Flux.from(a.connection().createStatement("SELECT 1").execute()))
        .expectError(R2dbcNonTransientResourceException.class).verify();
    a.release();
    assertThat(physical.isClosed()).isFalse();
    Borrower b = Borrower.borrow(pool.create());
    assertThat(b.physical()).isSameAs(physical);
    assertThat(pool.stats().closed()).isZero();
    b.release();
  }

  @Test
  void anErrorThatEndsOnlyItsOwnSessionLeavesTheIdleConnectionsUnchecked() {
    ConnectionPool pool = pool(b -> b.maxSize(3).initialSize(3).minIdle(0));
    Borrower a = Borrower.borrow(pool.create());
    FakeConnection victim = a.physical();
    List<FakeConnection> idle = driver.connections().stream().filter(c -> c != victim).toList();
    victim.failNextStatement(new FakeSqlException("idle session timeout", "57P05"));
    StepVerifier.create(Flux.from(a.connection().createStatement("SELECT 1").execute()))
        .expectError().verify();
    assertThat(idle).allSatisfy(c -> assertThat(c.validations()).isZero());
    assertThat(pool.stats().idle()).isEqualTo(2);
    a.release();
    assertThat(victim.isClosed()).isTrue();
  }

  @org.junit.jupiter.params.ParameterizedTest
  @org.junit.jupiter.params.provider.ValueSource(strings = {"57P01", "57P02", "57P03", "08006"})
  void whenOneConnectionShowsTheServerRestartedTheIdleOnesAreCheckedAtOnce(String sqlState) {
    ConnectionPool pool = pool(b -> b.maxSize(4).initialSize(4).minIdle(0));
    Borrower a = Borrower.borrow(pool.create());
    FakeConnection victim = a.physical();
    List<FakeConnection> idle = driver.connections().stream().filter(c -> c != victim).toList();
    idle.forEach(FakeConnection::breakConnection); // the restart killed them too
    victim.failNextStatement(new FakeSqlException("server went away", sqlState));
    StepVerifier.create(Flux.from(a.connection().createStatement("SELECT 1").execute()))
        .expectError().verify();
    // no borrower has touched them, yet they are already closed
    assertThat(idle).allSatisfy(c -> assertThat(c.isClosed()).isTrue());
    assertThat(pool.stats().idle()).isZero();
    a.release();
    assertThat(victim.isClosed()).isTrue();
  }

  // ------------------------------------------------------------------ 4. retirement

  @Test
  void idleConnectionsBeyondMinIdleAreClosedAfterMaxIdleTime() {
    ConnectionPool pool = pool(b -> b.maxSize(5).initialSize(5).minIdle(2)
        .maxIdleTime(Duration.ofMinutes(10)).keepaliveInterval(Duration.ZERO)
        .backgroundEvictionInterval(Duration.ofMinutes(1)));
    time.advanceTimeBy(Duration.ofMinutes(9));
    assertThat(pool.stats().idle()).isEqualTo(5);
    time.advanceTimeBy(Duration.ofMinutes(1));
    assertThat(pool.stats().idle()).isEqualTo(2);
    assertThat(driver.closed()).isEqualTo(3);
  }

  @Test
  void connectionsRetireBeforeMaxLifeTimeWithJitterAndAFewAtATime() {
    ConnectionPool pool = pool(b -> b.maxSize(8).initialSize(8).minIdle(8)
        .maxConcurrentCreates(8).maxLifeTime(Duration.ofMinutes(30))
        .maxIdleTime(Duration.ofHours(1)).keepaliveInterval(Duration.ZERO)
        .backgroundEvictionInterval(Duration.ofSeconds(5)));
    Set<Long> first = new HashSet<>();
    driver.connections().forEach(c -> first.add(c.id()));
    time.advanceTimeBy(Duration.ofMinutes(30).minusSeconds(46)); // 2.5 % of 30 min is 45 s
    assertThat(driver.closed()).isZero();
    time.advanceTimeBy(Duration.ofSeconds(5));
    assertThat(driver.closed()).as("at most maxSize/4 per round").isLessThanOrEqualTo(2);
    // 2.5 % jitter puts every expiry in the last 45 s; at two per 5 s round the last ones may
    // retire a few rounds after maxLifeTime.
    time.advanceTimeBy(Duration.ofSeconds(45 + 20));
    assertThat(driver.closed()).isEqualTo(8);
    assertThat(driver.connections()).filteredOn(c -> first.contains(c.id()))
        .allSatisfy(c -> assertThat(c.isClosed()).isTrue());
    assertThat(pool.stats().idle()).as("minIdle refilled").isEqualTo(8);
  }

  @Test
  void lifetimeRetirementIsCappedAtAQuarterOfMaxSizePerRound() {
    ConnectionPool pool = pool(b -> b.maxSize(8).initialSize(8).maxConcurrentCreates(8)
        .maxLifeTime(Duration.ofMinutes(10)).maxIdleTime(Duration.ofHours(2))
        .keepaliveInterval(Duration.ZERO).backgroundEvictionInterval(Duration.ofMinutes(20)));
    time.advanceTimeBy(Duration.ofMinutes(20)); // one round: all eight are past their lifetime
    assertThat(driver.closed()).isEqualTo(2);
    time.advanceTimeBy(Duration.ofMinutes(20));
    assertThat(driver.closed()).isEqualTo(4);
    assertThat(pool.stats().allocated()).isEqualTo(4);
  }

  @Test
  void lifetimesAreJitteredSoAPoolDoesNotExpireAtOnce() {
    ConnectionPool pool = pool(b -> b.maxSize(8).initialSize(8).maxConcurrentCreates(8)
        .maxLifeTime(Duration.ofMinutes(40)).maxIdleTime(Duration.ofHours(2))
        .keepaliveInterval(Duration.ZERO).backgroundEvictionInterval(Duration.ofSeconds(1)));
    time.advanceTimeBy(Duration.ofMinutes(39).minusSeconds(1)); // 2.5 % of 40 min is 60 s
    assertThat(driver.closed()).isZero();
    Set<Integer> secondsWithRetirements = new HashSet<>();
    for (int second = 0; second <= 61; second++) {
      int before = driver.closed();
      time.advanceTimeBy(Duration.ofSeconds(1));
      if (driver.closed() > before) {
        secondsWithRetirements.add(second);
      }
    }
    assertThat(driver.connections().stream().filter(c -> c.id() <= 8))
        .allSatisfy(c -> assertThat(c.isClosed()).isTrue());
    assertThat(secondsWithRetirements).as("eight lifetimes spread over the last minute").hasSizeGreaterThan(1);
    assertThat(pool.stats().allocated()).isZero();
  }

  @Test
  void aLentConnectionPastItsLifetimeIsRetiredWhenItComesBack() {
    ConnectionPool pool = pool(b -> b.maxSize(1).maxLifeTime(Duration.ofMinutes(10))
        .keepaliveInterval(Duration.ZERO));
    Borrower a = Borrower.borrow(pool.create());
    FakeConnection physical = a.physical();
    time.advanceTimeBy(Duration.ofMinutes(11));
    assertThat(physical.isClosed()).isFalse();
    a.release();
    assertThat(physical.isClosed()).isTrue();
    assertThat(pool.stats().allocated()).isZero();
  }

  @Test
  void aLifetimeShorterThanThePoolsOwnWorkStillServesEachBorrowerWithOneConnect() {
    // Every read of the pool's clock moves it on by 1 ms, so a connection is past a 1 us lifetime
    // by the next time the pool looks at it: a new connection must still serve its borrower
    // instead of being retired at once and replaced, again and again.
    TickingVirtualTime ticking = new TickingVirtualTime(Duration.ofMillis(1));
    FakeConnectionFactory fake = new FakeConnectionFactory().scheduler(ticking);
    AtomicInteger connects = new AtomicInteger();
    ConnectionFactory stopsAfter100 = new ConnectionFactory() { // so a loop ends, and shows
      @Override
      public Publisher<? extends Connection> create() {
        return connects.incrementAndGet() <= 100 ? fake.create() : Mono.never();
      }

      @Override
      public ConnectionFactoryMetadata getMetadata() {
        return fake.getMetadata();
      }
    };
    ConnectionPool pool = ConnectionPool.builder(stopsAfter100).initialSize(0).maxSize(2)
        .maxLifeTime(Duration.ofNanos(1_000)).scheduler(ticking).poolName("life").build();
    try {
      for (int i = 0; i < 5; i++) {
        Borrower b = Borrower.borrow(pool.create());
        assertThat(b.error()).isNull();
        assertThat(b.got()).as("borrower %d served (connects so far: %d)", i, connects.get())
            .isTrue();
        b.release();
      }
      assertThat(connects.get()).as("one connect per borrower").isEqualTo(5);
      assertThat(fake.closed()).as("each retired when it came back").isEqualTo(5);
      assertThat(pool.stats().allocated()).isZero();
    } finally {
      pool.dispose();
      ticking.dispose();
    }
  }

  @Test
  void minIdleIsRefilledAfterEveryEviction() {
    ConnectionPool pool = pool(b -> b.maxSize(4).minIdle(3).keepaliveInterval(Duration.ZERO)
        .backgroundEvictionInterval(Duration.ofSeconds(10)));
    time.advanceTimeBy(Duration.ofSeconds(10));
    assertThat(pool.stats().idle()).isEqualTo(3);
    Borrower a = Borrower.borrow(pool.create());
    a.physical().failNextStatement(new R2dbcNonTransientResourceException("gone"));
    StepVerifier.create(Flux.from(a.connection().createStatement("SELECT 1").execute()))
        .expectError().verify();
    a.release(); // closed: broken
    assertThat(pool.stats().idle()).isEqualTo(3);
    assertThat(driver.closed()).isEqualTo(1);
  }

  // ------------------------------------------------------------------ 5. keepalive

  @Test
  void keepaliveReplacesAConnectionTheServerDroppedBeforeABorrowerSeesIt() {
    ConnectionPool pool = pool(b -> b.maxSize(2).initialSize(2).minIdle(2)
        .keepaliveInterval(Duration.ofMinutes(2))
        .backgroundEvictionInterval(Duration.ofSeconds(10)));
    FakeConnection dropped = driver.connections().get(0);
    dropped.breakConnection();
    time.advanceTimeBy(Duration.ofMinutes(2));
    assertThat(dropped.validations()).isEqualTo(1);
    assertThat(dropped.isClosed()).isTrue();
    assertThat(driver.connections().get(1).validations()).isEqualTo(1);
    assertThat(pool.stats().idle()).isEqualTo(2);
    Borrower b = Borrower.borrow(pool.create());
    assertThat(b.physical()).isNotSameAs(dropped);
    b.release();
  }

  // ------------------------------------------------------------------ 6. creation failures

  @Test
  void connectsBackOffExponentiallyAndThePoolRecoversByItselfWhenTheDatabaseIsBack() {
    driver.failConnects(true);
    ConnectionPool pool = pool(b -> b.maxSize(2).maxAcquireTime(Duration.ofSeconds(30))
        .acquireRetry(Integer.MAX_VALUE));
    Borrower waiter = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofSeconds(20));
    int attempts = driver.connectAttempts();
    // 10 ms doubling to 500 ms with equal jitter: 6 attempts in the first 0.6 s, then one every
    // 250 to 500 ms: 45 to 86 attempts in 20 s, not thousands
    assertThat(attempts).isBetween(45, 86);
    driver.failConnects(false);
    time.advanceTimeBy(Duration.ofMillis(500));
    assertThat(waiter.got()).as("served within one back-off step of the return").isTrue();
    assertThat(driver.connectAttempts() - attempts).isEqualTo(1);
  }

  @Test
  void whileTheDatabaseIsDownAcquiresFailAtOnceAndOneProbeConnectsInTheBackground() {
    driver.failConnects(true);
    ConnectionPool pool = pool(b -> b.maxSize(4).maxAcquireTime(Duration.ofSeconds(30)));
    Borrower first = Borrower.borrow(pool.create()); // its connect fails at once (virtual time)
    assertThat(first.error()).as("failed with the first connect failure, not at its deadline")
        .isInstanceOf(PoolUnavailableException.class)
        .hasMessageContaining("no connection, and the last attempt to open one failed")
        .hasCauseInstanceOf(R2dbcNonTransientResourceException.class);
    assertThat(first.error().getCause()).hasMessageContaining("connection refused");
    int attempts = driver.connectAttempts();
    assertThat(attempts).isEqualTo(1);
    for (int i = 0; i < 100; i++) {
      Borrower later = Borrower.borrow(pool.create());
      assertThat(later.error()).isInstanceOf(PoolUnavailableException.class);
    }
    assertThat(driver.connectAttempts()).as("failing acquires start no connects").isEqualTo(1);
    assertThat(pool.stats().unavailable()).isEqualTo(101);
    assertThat(pool.stats().pending()).isZero();

    time.advanceTimeBy(Duration.ofSeconds(6));
    // the probe: one connect at a time, backing off to one per 250-500 ms: no storm
    assertThat(driver.connectAttempts()).isBetween(12, 30);

    driver.failConnects(false);
    time.advanceTimeBy(Duration.ofMillis(500));
    assertThat(pool.stats().idle()).as("the probe's connection waits, idle").isEqualTo(1);
    Borrower back = Borrower.borrow(pool.create());
    assertThat(back.got()).isTrue();
    back.release();
    int settled = driver.connectAttempts();
    time.advanceTimeBy(Duration.ofMinutes(1));
    assertThat(driver.connectAttempts()).as("no probing once a connection is open")
        .isEqualTo(settled);
  }

  @Test
  void aPoolWithAConnectionLentWaitsForItInsteadOfFailingFast() {
    ConnectionPool pool = pool(b -> b.maxSize(2).maxAcquireTime(Duration.ofSeconds(5)));
    Borrower holder = Borrower.borrow(pool.create());
    driver.failConnects(true);
    Borrower waiter = Borrower.borrow(pool.create()); // the connect for it fails
    time.advanceTimeBy(Duration.ofSeconds(1));
    assertThat(driver.connectAttempts()).isGreaterThan(1);
    assertThat(waiter.error()).as("a connection is open: the waiter waits for it").isNull();
    holder.release();
    assertThat(waiter.got()).isTrue();
    waiter.release();
  }

  @Test
  void aLentConnectionThatFailedFatallyIsNothingToWaitFor() {
    ConnectionPool pool = pool(b -> b.maxSize(2).maxAcquireTime(Duration.ofSeconds(5)));
    Borrower holder = Borrower.borrow(pool.create());
    holder.physical().breakConnection(); // the server went away under the borrower's query
    StepVerifier.create(Flux.from(holder.connection().createStatement("SELECT 1").execute()))
        .expectErrorMessage("connection broken (fake)").verify();
    driver.failConnects(true);
    Borrower waiter = Borrower.borrow(pool.create()); // the connect for it fails
    assertThat(waiter.error()).as("the only open connection is broken: the pool is down")
        .isInstanceOf(PoolUnavailableException.class);
    assertThat(Borrower.borrow(pool.create()).error()).as("and fails the next acquire at once")
        .isInstanceOf(PoolUnavailableException.class);
    holder.release();
    assertThat(holder.physical().isClosed()).isTrue();
  }

  @Test
  void acquireRetryFailsAWaiterAfterThatManyConnectFailuresWithinItsDeadline() {
    driver.failConnects(true);
    ConnectionPool pool = pool(b -> b.maxSize(2).acquireRetry(2)
        .maxAcquireTime(Duration.ofSeconds(30)));
    Borrower waiter = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofMillis(200));
    assertThat(waiter.error()).isInstanceOf(PoolUnavailableException.class)
        .hasMessageContaining("3 failed in a row")
        .hasCauseInstanceOf(R2dbcNonTransientResourceException.class);
    assertThat(waiter.error().getCause()).hasMessageContaining("connection refused");
  }

  @Test
  void aFailingPostAllocateClosesTheConnectionAndCountsAsAFailedConnect() {
    java.util.concurrent.atomic.AtomicInteger calls = new java.util.concurrent.atomic.AtomicInteger();
    ConnectionPool pool = pool(b -> b.maxSize(1).acquireRetry(1).postAllocate(c -> calls.incrementAndGet() == 1
        ? Mono.error(new IllegalStateException("SET failed")) : Mono.empty()));
    Borrower waiter = Borrower.borrow(pool.create());
    assertThat(driver.connections().get(0).isClosed()).isTrue();
    assertThat(pool.stats().createFailures()).isEqualTo(1);
    assertThat(waiter.got()).isFalse();
    time.advanceTimeBy(Duration.ofMillis(10)); // back-off
    assertThat(waiter.physical().id()).isEqualTo(2);
    assertThat(calls.get()).isEqualTo(2);
  }

  @Test
  void acquireRetryKeepsTheWaitersPlaceAndItsDeadline() {
    driver.failConnects(true);
    ConnectionPool pool = pool(b -> b.maxSize(1).acquireRetry(1_000)
        .maxAcquireTime(Duration.ofSeconds(5)));
    Borrower first = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofSeconds(1));
    Borrower second = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofSeconds(2));
    driver.failConnects(false);
    time.advanceTimeBy(Duration.ofSeconds(2)); // the back-off ends within first's deadline
    assertThat(first.got()).as("the earlier waiter is served first").isTrue();
    assertThat(second.got()).isFalse();
    first.release();
    assertThat(second.got()).isTrue();
    second.release();

    FakeConnectionFactory down = new FakeConnectionFactory().scheduler(time).failConnects(true);
    ConnectionPool other = ConnectionPool.builder(down).initialSize(0).scheduler(time)
        .acquireRetry(1_000).maxAcquireTime(Duration.ofSeconds(5)).build();
    try {
      Borrower third = Borrower.borrow(other.create());
      time.advanceTimeBy(Duration.ofMillis(4999));
      assertThat(down.connectAttempts()).as("the pool kept retrying").isGreaterThan(5);
      assertThat(third.error()).isNull();
      time.advanceTimeBy(Duration.ofMillis(1));
      assertThat(third.error()).as("retries never extend the deadline")
          .isInstanceOf(PoolAcquireTimeoutException.class)
          .hasCauseInstanceOf(io.r2dbc.spi.R2dbcNonTransientResourceException.class);
    } finally {
      other.dispose();
    }
  }

  @Test
  void warmupOpensWhatTheInitialFillCouldNotInParallelBoundedByMaxConcurrentCreates() {
    driver.failNextConnects(1);
    ConnectionPool pool = pool(b -> b.maxSize(10).initialSize(7).maxConcurrentCreates(3));
    assertThat(pool.stats().allocated()).isZero(); // the initial fill gave up on the failure
    driver.connectLatency(Duration.ofSeconds(1));
    Integer[] opened = new Integer[1];
    pool.warmup().subscribe(n -> opened[0] = n);
    assertThat(driver.connectsInFlight()).isEqualTo(3);
    time.advanceTimeBy(Duration.ofSeconds(1));
    assertThat(driver.connectsInFlight()).isEqualTo(3);
    time.advanceTimeBy(Duration.ofSeconds(2));
    assertThat(opened[0]).isEqualTo(7);
    assertThat(driver.maxLive()).isEqualTo(7);
  }

  // ------------------------------------------------------------------ 7. warmup

  @Test
  void warmupOpensInParallelBoundedByMaxConcurrentCreates() {
    driver.connectLatency(Duration.ofSeconds(1));
    ConnectionPool pool = pool(b -> b.maxSize(10).initialSize(0).maxConcurrentCreates(3));
    ConnectionPool warm = pool(b -> b.maxSize(10).initialSize(7).maxConcurrentCreates(3));
    driver.connectLatency(Duration.ofSeconds(1));
    assertThat(driver.connectsInFlight()).isEqualTo(3);
    Integer[] opened = new Integer[1];
    warm.warmup().subscribe(n -> opened[0] = n);
    time.advanceTimeBy(Duration.ofSeconds(3));
    assertThat(opened[0]).isZero(); // the background fill opened them all
    assertThat(warm.stats().idle()).isEqualTo(7);
    assertThat(driver.maxLive()).isEqualTo(7);
    assertThat(pool.stats().allocated()).isZero();
  }

  // ------------------------------------------------------------------ 8. soft eviction

  @Test
  void softEvictClosesIdleRetiresLentOnReturnAndRefills() {
    ConnectionPool pool = pool(b -> b.maxSize(4).initialSize(3));
    Borrower lent = Borrower.borrow(pool.create());
    List<FakeConnection> before = List.copyOf(driver.connections());
    StepVerifier.create(pool.softEvict()).verifyComplete();
    assertThat(before).filteredOn(c -> c != lent.physical())
        .allSatisfy(c -> assertThat(c.isClosed()).isTrue());
    assertThat(lent.physical().isClosed()).isFalse();
    assertThat(pool.stats().idle()).isEqualTo(2);
    FakeConnection old = lent.physical();
    lent.release();
    assertThat(old.isClosed()).isTrue();
    assertThat(driver.opened()).isEqualTo(5);
  }

  @Test
  void aSoftEvictionCompletesOnceThePoolIsRefilledEvenWhenWaitersTookTheNewConnections() {
    driver.connectLatency(Duration.ofMillis(10));
    ConnectionPool pool = pool(b -> b.maxSize(2).initialSize(2).maxConcurrentCreates(1));
    time.advanceTimeBy(Duration.ofMillis(20));
    assertThat(pool.stats().idle()).isEqualTo(2);
    AtomicInteger evicted = new AtomicInteger();
    pool.softEvict().subscribe(null, e -> evicted.set(-1), () -> evicted.set(1));
    // The eviction's refill has started one connect; three subscribers queue behind it, so the
    // next connect is made for them, and the pool is full again.
    List<Borrower> waiters = List.of(Borrower.borrow(pool.create()),
        Borrower.borrow(pool.create()), Borrower.borrow(pool.create()));
    time.advanceTimeBy(Duration.ofMillis(20));
    assertThat(waiters.stream().filter(Borrower::got).count()).isEqualTo(2);
    assertThat(pool.stats().allocated()).isEqualTo(2);
    assertThat(evicted.get()).as("the pool holds as many connections as before: the eviction is"
        + " done, whoever the new connections went to").isEqualTo(1);
    waiters.forEach(w -> {
      if (w.got()) {
        w.release();
      }
    });
    assertThat(waiters.get(2).got()).isTrue();
  }

  @Test
  void aConnectionOpenedAcrossASoftEvictionIsClosedNotLent() {
    driver.connectLatency(Duration.ofSeconds(1));
    ConnectionPool pool = pool(b -> b.maxSize(2));
    Borrower waiter = Borrower.borrow(pool.create()); // its connect is in flight
    StepVerifier.create(pool.softEvict()).verifyComplete();
    time.advanceTimeBy(Duration.ofSeconds(1)); // the old-epoch connection arrives
    FakeConnection old = driver.connections().get(0);
    assertThat(old.isClosed()).isTrue();
    assertThat(waiter.got()).isFalse();
    time.advanceTimeBy(Duration.ofSeconds(1));
    assertThat(waiter.physical()).isNotSameAs(old);
  }

  @Test
  void acquireRetryCountsOnlyTheFailuresASubscriberSawAfterAFailedValidation() {
    ConnectionPool pool = pool(b -> b.maxSize(2).acquireRetry(1));
    driver.failNextConnects(2);
    Borrower early = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofSeconds(1));
    assertThat(early.error()).as("two failures, one retry allowed").isNotNull();
    Borrower ok = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofSeconds(1));
    FakeConnection stale = ok.physical();
    ok.release();
    time.advanceTimeBy(Duration.ofSeconds(1)); // past the skip window
    stale.breakConnection();
    driver.failConnects(true);
    Borrower late = Borrower.borrow(pool.create()); // validation fails, it queues, connects fail
    assertThat(driver.connectAttempts()).isEqualTo(4);
    assertThat(late.error()).as("one failure seen: still within acquireRetry").isNull();
    time.advanceTimeBy(Duration.ofSeconds(1));
    assertThat(late.error()).hasMessageContaining("connection refused");
  }

  @Test
  void aTimedOutConnectLetsTheNextAttemptUseAnotherSlotAtOnce() {
    driver.hangConnects(true);
    ConnectionPool pool = pool(b -> b.maxSize(3).maxConcurrentCreates(1).acquireRetry(1)
        .maxCreateConnectionTime(Duration.ofSeconds(1)).maxCloseTime(Duration.ofSeconds(10)));
    Borrower waiter = Borrower.borrow(pool.create());
    driver.hangConnects(false); // only the first attempt hangs
    time.advanceTimeBy(Duration.ofMillis(1100)); // timeout at 1 s, then a short back-off
    assertThat(waiter.got()).isTrue();
    assertThat(pool.stats().allocated()).as("the timed-out slot still lingers").isEqualTo(2);
  }

  // ------------------------------------------------------------------ 9. bounded close

  @Test
  void aHungCloseFreesItsSlotAfterMaxCloseTimeAndTheAccountsStayExact() {
    ConnectionPool pool = pool(b -> b.maxSize(1).maxCloseTime(Duration.ofSeconds(3)));
    Borrower a = Borrower.borrow(pool.create());
    a.physical().failNextStatement(new R2dbcNonTransientResourceException("gone"));
    StepVerifier.create(Flux.from(a.connection().createStatement("SELECT 1").execute()))
        .expectError().verify();
    driver.hangCloses(true);
    a.release();
    Borrower waiter = Borrower.borrow(pool.create());
    assertThat(pool.stats().allocated()).as("the closing connection still holds its slot").isEqualTo(1);
    assertThat(waiter.got()).isFalse();
    time.advanceTimeBy(Duration.ofSeconds(3));
    assertThat(waiter.got()).isTrue();
    PoolStats s = pool.stats();
    assertThat(s.allocated()).isEqualTo(1);
    assertThat(s.closed()).isEqualTo(1);
    assertThat(s.created()).isEqualTo(2);
  }

  @Test
  void closesThatHangPastMaxCloseTimeFreeAtMostMaxSizeSlotsSoSocketsStayBelowTwiceMaxSize() {
    driver.closeLatency(Duration.ofMinutes(10)); // every close hangs far past maxCloseTime
    ConnectionPool pool = pool(b -> b.maxSize(2).maxCloseTime(Duration.ofSeconds(1))
        .maxAcquireTime(Duration.ofHours(1)));
    for (int round = 0; round < 4; round++) {
      Borrower b = Borrower.borrow(pool.create());
      assertThat(b.got()).as("round %d served", round).isTrue();
      b.physical().failNextStatement(new R2dbcNonTransientResourceException("gone"));
      StepVerifier.create(Flux.from(b.connection().createStatement("SELECT 1").execute()))
          .expectError().verify();
      b.release(); // broken: closed, and the close hangs
      time.advanceTimeBy(Duration.ofSeconds(1));
    }
    // Two abandoned closes freed their slots; the next two keep theirs: the pool is full of
    // closing connections and has four sockets, never more.
    assertThat(driver.closing()).isEqualTo(4);
    assertThat(driver.maxLive()).isEqualTo(4);
    assertThat(pool.stats().allocated()).isEqualTo(2);
    Borrower waiter = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofMinutes(5));
    assertThat(waiter.got()).as("no slot until a hanging close ends").isFalse();
    time.advanceTimeBy(Duration.ofMinutes(6));
    assertThat(waiter.got()).isTrue();
    assertThat(driver.closing()).isZero();
    assertThat(driver.maxLive()).isEqualTo(4);
    waiter.release();
  }

  @Test
  void whenTheLastOpenConnectionDiesAfterAConnectFailedItsWaitersFailAtOnce() {
    ConnectionPool pool = pool(b -> b.maxSize(2).maxAcquireTime(Duration.ofSeconds(30)));
    Borrower holder = Borrower.borrow(pool.create());
    Borrower other = Borrower.borrow(pool.create());
    driver.failConnects(true);
    holder.physical().failNextStatement(new R2dbcNonTransientResourceException("gone"));
    StepVerifier.create(Flux.from(holder.connection().createStatement("SELECT 1").execute()))
        .expectError().verify();
    holder.release(); // broken: closed; its replacement connect fails, one connection still open
    Borrower waiter = Borrower.borrow(pool.create());
    assertThat(waiter.error()).as("a connection is still open: wait for it").isNull();
    other.physical().failNextStatement(new R2dbcNonTransientResourceException("gone"));
    StepVerifier.create(Flux.from(other.connection().createStatement("SELECT 1").execute()))
        .expectError().verify();
    other.release(); // the last open connection goes: nothing left to wait for
    assertThat(waiter.error()).isInstanceOf(PoolUnavailableException.class);
  }
}
