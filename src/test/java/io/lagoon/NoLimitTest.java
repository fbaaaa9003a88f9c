package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.FakeConnection;
import java.time.Duration;
import org.junit.jupiter.api.Test;

/**
 * r2dbc-pool's negative timeouts, "no limit", in virtual time: nothing ever times out, no timer
 * fires even far beyond {@link ConnectionPoolBuilder#NO_LIMIT}, and no deadline overflows however
 * far the clock is from zero.
 */
class NoLimitTest extends PoolFixture {

  private static final Duration NONE = Duration.ofSeconds(-1);
  /** Longer than NO_LIMIT (36,500 days): a timer armed for it would have fired. */
  private static final Duration BEYOND = Duration.ofDays(40_000);
  /** Housekeeping rounds far apart, so that advancing by BEYOND runs only a few. */
  private static final Duration RARE = Duration.ofDays(1_000);
  /**
   * What never ends keeps dispose() after the test waiting for its bound, maxCloseTime + 1 s of
   * real time: keep that short.
   */
  private static final Duration SHORT_DISPOSE = Duration.ofMillis(10);

  NoLimitTest() {
    super("no-limit");
  }

  @Test
  void anAcquireWithoutATimeLimitWaitsBeyondAnyTimerAndIsServedOnRelease() {
    ConnectionPool pool = pool(b -> b.maxSize(1).maxAcquireTime(NONE).maxLifeTime(NONE)
        .backgroundEvictionInterval(RARE));
    Borrower holder = Borrower.borrow(pool.create());
    Borrower waiter = Borrower.borrow(pool.create());

    time.advanceTimeBy(BEYOND);

    assertThat(waiter.error()).isNull();
    assertThat(waiter.got()).isFalse();
    assertThat(pool.stats().pending()).isEqualTo(1);
    assertThat(pool.stats().timeouts()).isZero();
    FakeConnection physical = holder.physical();
    holder.release();
    assertThat(waiter.physical()).isSameAs(physical);
    waiter.release();
  }

  @Test
  void connectionsWithoutLifeOrIdleLimitStayOpenForAnyTime() {
    ConnectionPool pool = pool(b -> b.maxSize(2).initialSize(2).maxLifeTime(NONE)
        .maxIdleTime(NONE).keepaliveInterval(Duration.ZERO).backgroundEvictionInterval(RARE));
    assertThat(pool.stats().idle()).isEqualTo(2);

    time.advanceTimeBy(BEYOND);

    assertThat(driver.closed()).isZero();
    assertThat(pool.stats().idle()).isEqualTo(2);
    Borrower b = Borrower.borrow(pool.create());
    assertThat(b.physical().id()).isLessThanOrEqualTo(2);
    b.release();
    assertThat(driver.opened()).isEqualTo(2);
  }

  @Test
  void noLimitNeverOverflowsWhenTheClockIsFarFromZero() {
    // 200 years on: the clock plus NO_LIMIT exceeds Long.MAX_VALUE nanoseconds and wraps around
    time.advanceTimeBy(Duration.ofDays(73_000));
    assertThat(time.now(java.util.concurrent.TimeUnit.NANOSECONDS)
        + ConnectionPoolBuilder.NO_LIMIT.toNanos()).as("it does overflow").isNegative();
    ConnectionPool pool = pool(b -> b.maxSize(1).maxAcquireTime(NONE).maxLifeTime(NONE)
        .maxIdleTime(NONE).backgroundEvictionInterval(RARE));
    Borrower first = Borrower.borrow(pool.create());
    FakeConnection physical = first.physical();
    Borrower waiter = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofDays(3_000));
    assertThat(waiter.error()).isNull();
    first.release();
    assertThat(waiter.physical()).as("not retired: its lifetime has no end").isSameAs(physical);
    waiter.release();
    time.advanceTimeBy(Duration.ofDays(3_000));
    assertThat(physical.isClosed()).isFalse();
    assertThat(driver.opened()).isEqualTo(1);
  }

  @Test
  void aConnectWithoutATimeLimitIsNeverCancelled() {
    driver.hangConnects(true);
    ConnectionPool pool = pool(b -> b.maxSize(1).maxCreateConnectionTime(NONE)
        .maxAcquireTime(Duration.ofHours(1)).backgroundEvictionInterval(RARE)
        .maxCloseTime(SHORT_DISPOSE));
    Borrower b = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofMinutes(59));
    assertThat(b.error()).isNull();
    assertThat(driver.connectsInFlight()).isEqualTo(1);

    time.advanceTimeBy(Duration.ofMinutes(1));
    assertThat(b.error()).isInstanceOf(PoolAcquireTimeoutException.class);

    time.advanceTimeBy(BEYOND);
    assertThat(driver.cancelledConnects()).isZero();
    assertThat(driver.connectsInFlight()).as("still waiting for the driver").isEqualTo(1);
    assertThat(driver.connectAttempts()).isEqualTo(1);
  }

  @Test
  void aValidationWithoutATimeLimitKeepsItsConnectionWhileTheBorrowerTimesOut() {
    ConnectionPool pool = pool(b -> b.maxSize(1).maxValidationTime(NONE)
        .maxAcquireTime(Duration.ofMinutes(1)).maxLifeTime(NONE).maxIdleTime(NONE)
        .keepaliveInterval(Duration.ZERO).backgroundEvictionInterval(RARE)
        .maxCloseTime(SHORT_DISPOSE));
    Borrower first = Borrower.borrow(pool.create());
    FakeConnection physical = first.physical();
    first.release();
    time.advanceTimeBy(Duration.ofSeconds(1)); // past the skip window: the next borrow validates
    physical.hangValidation(true);

    Borrower second = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofMinutes(1));
    assertThat(second.error()).isInstanceOf(PoolAcquireTimeoutException.class);

    time.advanceTimeBy(BEYOND);
    assertThat(physical.isClosed()).as("the validation never timed out").isFalse();
    assertThat(pool.stats().allocated()).isEqualTo(1);
    assertThat(driver.opened()).isEqualTo(1);
  }
}
