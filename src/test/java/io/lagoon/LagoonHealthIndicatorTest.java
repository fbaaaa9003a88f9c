package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.spring.LagoonHealthIndicator;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.springframework.boot.health.contributor.Health;
import org.springframework.boot.health.contributor.Status;
import reactor.test.StepVerifier;

/** The health indicator over the fake driver, in virtual time. */
class LagoonHealthIndicatorTest extends PoolFixture {

  LagoonHealthIndicatorTest() {
    super("health");
  }

  private Health health(ConnectionPool pool) {
    return new LagoonHealthIndicator(pool, Duration.ofSeconds(1)).health().block();
  }

  @Test
  void aBusyPoolIsUpAndTheCheckTakesNoConnectionFromItsWaiters() {
    ConnectionPool pool = pool(b -> b.maxSize(1).initialSize(1));
    Borrower holder = Borrower.borrow(pool.create());
    Borrower waiter = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofSeconds(10)); // nothing fresh: only the lend says it works
    Health h = health(pool);
    assertThat(h.getStatus()).isEqualTo(Status.UP);
    assertThat(h.getDetails()).containsEntry("acquired", 1).containsEntry("pending", 1)
        .containsEntry("check", "connections are lent");
    assertThat(pool.stats().acquires()).as("the check borrowed nothing").isEqualTo(1);
    holder.release();
    assertThat(waiter.got()).isTrue();
    waiter.release();
  }

  @Test
  void aRecentlyWorkingIdleConnectionIsUpWithoutARoundTrip() {
    ConnectionPool pool = pool(b -> b.maxSize(2).initialSize(1));
    Health h = health(pool);
    assertThat(h.getStatus()).isEqualTo(Status.UP);
    assertThat(h.getDetails().get("check").toString()).startsWith("an idle connection worked");
    assertThat(driver.connections().get(0).validations()).isZero();
  }

  @Test
  void aQuietPoolIsCheckedWithARoundTrip() {
    ConnectionPool pool = pool(b -> b.maxSize(2).initialSize(1));
    time.advanceTimeBy(Duration.ofSeconds(5));
    Health h = health(pool);
    assertThat(h.getStatus()).isEqualTo(Status.UP);
    assertThat(h.getDetails()).containsEntry("check", "validated a connection");
    assertThat(driver.connections().get(0).lastValidationDepth())
        .isEqualTo(io.r2dbc.spi.ValidationDepth.REMOTE);
    assertThat(pool.stats().acquired()).as("given back").isZero();
  }

  @Test
  void waitersForConnectsInFlightMakeItUnknownNotDown() {
    driver.connectLatency(Duration.ofSeconds(3));
    ConnectionPool pool = pool(b -> b.maxSize(2));
    Borrower waiter = Borrower.borrow(pool.create());
    Health h = health(pool);
    assertThat(h.getStatus()).isEqualTo(Status.UNKNOWN);
    time.advanceTimeBy(Duration.ofSeconds(3));
    assertThat(waiter.got()).isTrue();
    waiter.release();
  }

  @Test
  void aDatabaseThatRefusesConnectionsIsDownAtOnce() {
    driver.failConnects(true);
    ConnectionPool pool = pool(b -> b.maxSize(2).initialSize(1));
    Health h = health(pool);
    assertThat(h.getStatus()).isEqualTo(Status.DOWN);
    assertThat(h.getDetails()).containsKey("error");
    assertThat(h.getDetails().get("reason").toString()).contains("refuses connections");
  }

  @Test
  void aDatabaseThatHangsIsDownAfterTheHealthTimeoutNotMaxAcquireTime() {
    driver.hangConnects(true);
    ConnectionPool pool = pool(b -> b.maxSize(2).maxAcquireTime(Duration.ofSeconds(30)));
    LagoonHealthIndicator indicator = new LagoonHealthIndicator(pool, Duration.ofSeconds(1));
    StepVerifier.withVirtualTime(indicator::health, () -> time, 1)
        .expectSubscription()
        .expectNoEvent(Duration.ofMillis(999))
        .thenAwait(Duration.ofMillis(1))
        .assertNext(h -> {
          assertThat(h.getStatus()).isEqualTo(Status.DOWN);
          assertThat(h.getDetails().get("reason").toString())
              .contains("no valid connection within lagoon.health.timeout PT1S");
        })
        .verifyComplete();
    assertThat(pool.stats().pending()).as("the check's acquire was cancelled").isZero();
  }

  @Test
  void aClosedPoolIsDown() {
    ConnectionPool pool = pool(b -> b.maxSize(1));
    pool.dispose();
    Health h = health(pool);
    assertThat(h.getStatus()).isEqualTo(Status.DOWN);
    assertThat(h.getDetails()).containsEntry("reason", "the pool is closed");
  }
}
