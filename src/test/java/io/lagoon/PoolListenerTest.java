package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.lagoon.PoolListener.AcquireOutcome;
import io.lagoon.PoolListener.EvictionReason;
import io.lagoon.testing.FakeConnection;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.R2dbcNonTransientResourceException;
import io.r2dbc.spi.R2dbcTransientResourceException;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.test.StepVerifier;

/** Events reach listeners with the right outcome, reason and duration, in virtual time. */
class PoolListenerTest extends PoolFixture {

  PoolListenerTest() {
    super("events");
  }

  /** Records every event as a line of text. */
  static final class Recorder implements PoolListener {
    final List<String> events = new CopyOnWriteArrayList<>();

    @Override
    public void onAttach(ConnectionPool pool) {
      events.add("attach " + pool.name());
    }

    @Override
    public void onAcquire(AcquireOutcome outcome, long waitNanos) {
      events.add("acquire " + outcome + " " + Duration.ofNanos(waitNanos));
    }

    @Override
    public void onLend() {
      events.add("lend");
    }

    @Override
    public void onReturn(long usageNanos) {
      events.add("return " + Duration.ofNanos(usageNanos));
    }

    @Override
    public void onCreate(boolean success, long nanos) {
      events.add("create " + success + " " + Duration.ofNanos(nanos));
    }

    @Override
    public void onConnectFailure(Throwable error) {
      events.add("connectFailure " + error.getMessage());
    }

    @Override
    public void onEvict(EvictionReason reason) {
      events.add("evict " + reason);
    }

    @Override
    public void onDetach() {
      events.add("detach");
    }

    List<String> starting(String prefix) {
      return events.stream().filter(e -> e.startsWith(prefix)).toList();
    }

    void clear() {
      events.clear();
    }
  }

  private final Recorder recorder = new Recorder();

  @Test
  void aBuilderListenerIsAttachedFirstAndSeesTheInitialFill() {
    driver.connectLatency(Duration.ofMillis(40));
    ConnectionPool pool = pool(b -> b.maxSize(2).initialSize(2).listener(recorder));
    time.advanceTimeBy(Duration.ofMillis(40));
    assertThat(recorder.events).containsExactly("attach events", "create true PT0.04S",
        "create true PT0.04S");
    assertThat(pool.stats().idle()).isEqualTo(2);
  }

  @Test
  void anAcquireServedAtOnceWaitsZeroAndAQueuedOneReportsItsWait() {
    ConnectionPool pool = pool(b -> b.maxSize(1).listener(recorder));
    driver.connectLatency(Duration.ofMillis(25));
    Borrower first = Borrower.borrow(pool.create()); // queues while the first connect runs
    time.advanceTimeBy(Duration.ofMillis(25));
    assertThat(first.got()).isTrue();
    Borrower second = Borrower.borrow(pool.create()); // queues behind the lent connection
    time.advanceTimeBy(Duration.ofSeconds(3));
    first.release();
    assertThat(second.got()).isTrue();
    second.release();
    Borrower third = Borrower.borrow(pool.create()); // idle and fresh: the fast path
    third.release();

    assertThat(recorder.starting("acquire")).containsExactly("acquire SUCCESS PT0.025S",
        "acquire SUCCESS PT3S", "acquire SUCCESS PT0S");
    assertThat(recorder.starting("lend")).hasSize(3);
    assertThat(recorder.starting("return")).containsExactly("return PT3S", "return PT0S",
        "return PT0S");
  }

  @Test
  void usageIsTheTimeAConnectionWasLent() {
    ConnectionPool pool = pool(b -> b.maxSize(1).initialSize(1).listener(recorder));
    Borrower b = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofMillis(1500));
    b.release();
    b.release(); // a second close is a no-op: no second return
    assertThat(recorder.starting("return")).containsExactly("return PT1.5S");
  }

  @Test
  void twoClosesRacingOnOneHandleReportOneReturn() {
    ConnectionPool pool = pool(b -> b.maxSize(1).initialSize(1).listener(recorder));
    int rounds = 2_000;
    for (int i = 0; i < rounds; i++) {
      Connection c = Borrower.borrow(pool.create()).connection();
      reactor.test.util.RaceTestUtils.race(() -> Mono.from(c.close()).subscribe(),
          () -> Mono.from(c.close()).subscribe());
    }
    assertThat(recorder.starting("return")).hasSize(rounds);
    assertThat(pool.stats().idle()).isEqualTo(1);
  }

  @Test
  void timeoutRejectionCancellationAndFailureAreReportedWithTheirWait() {
    ConnectionPool pool = pool(b -> b.maxSize(1).initialSize(1).maxPendingAcquires(1)
        .maxAcquireTime(Duration.ofSeconds(2)).listener(recorder));
    Borrower holder = Borrower.borrow(pool.create());
    recorder.clear();

    Borrower waiter = Borrower.borrow(pool.create());
    Borrower rejected = Borrower.borrow(pool.create()); // the queue holds one
    assertThat(rejected.error()).isInstanceOf(PoolExhaustedException.class);
    time.advanceTimeBy(Duration.ofSeconds(2));
    assertThat(waiter.error()).isInstanceOf(PoolAcquireTimeoutException.class);

    Borrower cancelled = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofMillis(700));
    cancelled.cancel();

    Borrower closed = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofMillis(300));
    pool.close().subscribe();
    assertThat(closed.error()).isInstanceOf(PoolClosedException.class);
    Borrower afterClose = Borrower.borrow(pool.create());
    assertThat(afterClose.error()).isInstanceOf(PoolClosedException.class);

    assertThat(recorder.starting("acquire")).containsExactly("acquire REJECTED PT0S",
        "acquire TIMEOUT PT2S", "acquire CANCELLED PT0.7S", "acquire FAILED PT0.3S",
        "acquire FAILED PT0S");
    holder.release();
  }

  @Test
  void connectsReportTheirDurationAndFailuresTheirError() {
    ConnectionPool pool = pool(b -> b.maxSize(2).acquireRetry(5).listener(recorder));
    driver.connectLatency(Duration.ofMillis(30)).failNextConnects(1);
    Borrower b = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofSeconds(1)); // the failure, the back-off, the second connect
    assertThat(b.got()).isTrue();
    assertThat(recorder.starting("create")).containsExactly("create false PT0.03S",
        "create true PT0.03S");
    assertThat(recorder.starting("connectFailure")).hasSize(1);
    b.release();
  }

  @Test
  void aDatabaseDownFailsTheAcquireAndReportsTheConnectFailure() {
    ConnectionPool pool = pool(b -> b.maxSize(2).listener(recorder));
    driver.failConnects(true);
    Borrower b = Borrower.borrow(pool.create());
    assertThat(b.error()).isInstanceOf(PoolUnavailableException.class);
    assertThat(recorder.starting("acquire")).containsExactly("acquire FAILED PT0S");
    assertThat(recorder.starting("create")).containsExactly("create false PT0S");
    assertThat(recorder.starting("connectFailure")).hasSize(1);
  }

  // ------------------------------------------------------------------ evictions

  @Test
  void idleAndLifetimeEvictionsNameTheirReason() {
    pool(b -> b.maxSize(2).initialSize(2).maxConcurrentCreates(2)
        .maxIdleTime(Duration.ofMinutes(10)).maxLifeTime(Duration.ofHours(1))
        .keepaliveInterval(Duration.ZERO).backgroundEvictionInterval(Duration.ofMinutes(1))
        .listener(recorder));
    time.advanceTimeBy(Duration.ofMinutes(10));
    assertThat(recorder.starting("evict")).containsExactly("evict IDLE", "evict IDLE");
    assertThat(driver.closed()).isEqualTo(2);

    Recorder lifetime = new Recorder();
    pool(b -> b.maxSize(1).initialSize(1).minIdle(1).maxLifeTime(Duration.ofMinutes(10))
        .maxIdleTime(Duration.ofHours(2)).keepaliveInterval(Duration.ZERO)
        .backgroundEvictionInterval(Duration.ofMinutes(1)).listener(lifetime));
    time.advanceTimeBy(Duration.ofMinutes(11));
    assertThat(lifetime.starting("evict")).containsExactly("evict LIFETIME");
  }

  @Test
  void aConnectionBrokenInUseOrFailingItsResetIsEvictedAsBroken() {
    ConnectionPool pool = pool(b -> b.maxSize(2).initialSize(1).listener(recorder));
    Borrower b = Borrower.borrow(pool.create());
    b.physical().failNextStatement(new R2dbcNonTransientResourceException("socket gone"));
    StepVerifier.create(Flux.from(b.connection().createStatement("SELECT 1").execute()))
        .expectError(R2dbcNonTransientResourceException.class).verify();
    b.release();
    assertThat(recorder.starting("evict")).containsExactly("evict BROKEN");
  }

  @Test
  void aConnectionFailingValidationOnBorrowIsEvictedForValidation() {
    ConnectionPool pool = pool(b -> b.maxSize(2).initialSize(1).validationQuery("SELECT 1")
        .listener(recorder));
    time.advanceTimeBy(Duration.ofSeconds(1)); // past the skip window
    FakeConnection idle = driver.connections().get(0);
    idle.failNextStatement(new R2dbcTransientResourceException("no answer"));
    Borrower b = Borrower.borrow(pool.create());
    assertThat(b.got()).isTrue();
    assertThat(b.physical()).isNotSameAs(idle);
    assertThat(recorder.starting("evict")).containsExactly("evict VALIDATION");
    assertThat(recorder.starting("acquire")).containsExactly("acquire SUCCESS PT0S");
    b.release();
  }

  @Test
  void softEvictionAndShutdownNameTheirReason() {
    ConnectionPool pool = pool(b -> b.maxSize(2).initialSize(2).maxConcurrentCreates(2)
        .listener(recorder));
    StepVerifier.create(pool.softEvict()).verifyComplete();
    assertThat(recorder.starting("evict")).containsExactly("evict SOFT", "evict SOFT");
    recorder.clear();
    Borrower lent = Borrower.borrow(pool.create());
    StepVerifier.create(pool.closeGracefully(Duration.ofSeconds(1)))
        .then(() -> time.advanceTimeBy(Duration.ofSeconds(1)))
        .verifyComplete();
    assertThat(recorder.starting("evict")).containsExactly("evict CLOSED", "evict CLOSED");
    assertThat(recorder.events).last().isEqualTo("detach");
    assertThat(lent.got()).isTrue();
  }

  // ------------------------------------------------------------------ registration

  @Test
  void anAddedListenerSeesEventsUntilItIsRemoved() {
    ConnectionPool pool = pool(b -> b.maxSize(1).initialSize(1));
    Disposable registration = pool.addListener(recorder);
    Borrower.borrow(pool.create()).release();
    registration.dispose();
    registration.dispose(); // idempotent
    Borrower.borrow(pool.create()).release();
    assertThat(recorder.events).containsExactly("attach events", "acquire SUCCESS PT0S", "lend",
        "return PT0S", "detach");
    assertThat(registration.isDisposed()).isTrue();
  }

  @Test
  void listenersAreDetachedOnceThePoolClosedEveryConnection() {
    ConnectionPool pool = pool(b -> b.maxSize(2).initialSize(1).listener(recorder));
    Borrower lent = Borrower.borrow(pool.create());
    Borrower.borrow(pool.create()).release(); // a second one, idle
    pool.close().subscribe();
    assertThat(recorder.events).doesNotContain("detach"); // one connection is still lent
    lent.release();
    assertThat(recorder.events).containsOnlyOnce("detach").last().isEqualTo("detach");

    Recorder late = new Recorder();
    pool.addListener(late);
    assertThat(late.events).containsExactly("attach events", "detach");
  }

  @Test
  void aListenerThatThrowsNeverDisturbsThePoolNorTheOtherListeners() {
    PoolListener thrower = new PoolListener() {
      @Override
      public void onAcquire(AcquireOutcome outcome, long waitNanos) {
        throw new IllegalStateException("acquire");
      }

      @Override
      public void onLend() {
        throw new IllegalStateException("lend");
      }

      @Override
      public void onReturn(long usageNanos) {
        throw new IllegalStateException("return");
      }

      @Override
      public void onCreate(boolean success, long nanos) {
        throw new IllegalStateException("create");
      }

      @Override
      public void onEvict(EvictionReason reason) {
        throw new IllegalStateException("evict");
      }
    };
    ConnectionPool pool = pool(b -> b.maxSize(1).listener(thrower).listener(recorder));
    for (int i = 0; i < 3; i++) {
      StepVerifier.create(pool.withConnection(c -> Mono.just(1))).expectNext(1).verifyComplete();
    }
    StepVerifier.create(pool.softEvict()).verifyComplete();
    assertThat(pool.stats().acquires()).isEqualTo(3);
    assertThat(pool.stats().acquired()).isZero();
    assertThat(recorder.starting("acquire")).hasSize(3);
    assertThat(recorder.starting("return")).hasSize(3);
    assertThat(recorder.starting("evict")).containsExactly("evict SOFT");
  }

  @Test
  void aListenerWhoseAttachThrowsIsNotAttachedAndTheCallerSeesWhy() {
    PoolListener refuses = new PoolListener() {
      @Override
      public void onAttach(ConnectionPool pool) {
        throw new IllegalStateException("not for pool " + pool.name());
      }

      @Override
      public void onLend() {
        throw new AssertionError("a listener that was not attached got an event");
      }
    };
    ConnectionPool pool = pool(b -> b.maxSize(1));
    assertThatThrownBy(() -> pool.addListener(refuses))
        .isInstanceOf(IllegalStateException.class).hasMessage("not for pool events");
    assertThatThrownBy(() -> pool(b -> b.listener(refuses)))
        .isInstanceOf(IllegalStateException.class).hasMessage("not for pool events");
    StepVerifier.create(pool.withConnection(c -> Mono.just(1))).expectNext(1).verifyComplete();
  }
}
