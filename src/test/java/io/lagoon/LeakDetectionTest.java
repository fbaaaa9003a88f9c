package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.CapturedLogs;
import io.lagoon.testing.Gc;
import io.r2dbc.spi.Connection;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;
import reactor.core.publisher.Mono;
import reactor.test.StepVerifier;
import reactor.test.util.RaceTestUtils;

/**
 * Leak detection in virtual time: a lend longer than leakDetectionThreshold is logged once, with
 * the stack that borrowed the connection, counted and sent to listeners; its return is logged at
 * INFO; an abandoned handle's warning names its borrow site too.
 */
class LeakDetectionTest extends PoolFixture {

  private static final String SITE = "io.lagoon.internal.LeakDetector$BorrowSite: create() called"
      + " on thread '";

  LeakDetectionTest() {
    super("leaky");
  }

  /** The first frame of the borrow site's stack that follows the {@code n}-th site in the log. */
  private static String firstFrame(String log, int n) {
    int at = -1;
    for (int i = 0; i <= n; i++) {
      at = log.indexOf(SITE, at + 1);
      assertThat(at).as("borrow site #%s in:%n%s", i, log).isNotNegative();
    }
    String[] lines = log.substring(at).split("\\R", 3);
    return lines[1].strip();
  }

  private static int count(String log, String text) {
    return log.split(java.util.regex.Pattern.quote(text), -1).length - 1;
  }

  @Test
  void aLendPastTheThresholdIsLoggedOnceWithItsBorrowSiteAndItsReturnAtInfo() {
    ConnectionPool pool = pool(b -> b.maxSize(2).leakDetectionThreshold(Duration.ofSeconds(10)));
    String log;
    Borrower kept;
    try (CapturedLogs logs = CapturedLogs.start(false)) {
      kept = Borrower.borrow(pool.create());
      time.advanceTimeBy(Duration.ofMillis(9_999));
      assertThat(logs.text()).as("not yet past the threshold").doesNotContain("possible leak",
          "has been lent for");
      time.advanceTimeBy(Duration.ofMinutes(2)); // housekeeping runs every 5 s meanwhile
      assertThat(pool.stats().leaks()).isEqualTo(1);
      kept.release();
      log = logs.text();
    }
    assertThat(log).contains("WARN", "Pool 'leaky': a connection has been lent for 10000 ms,"
        + " longer than leakDetectionThreshold (10000 ms); it may have leaked: its borrower has"
        + " not closed it [", "leaks=1]; it was borrowed here:",
        SITE + Thread.currentThread().getName() + "'");
    assertThat(count(log, "has been lent for")).as("one warning per lend").isEqualTo(1);
    assertThat(firstFrame(log, 0)).as("the stack starts at the code that called create()")
        .startsWith("at io.lagoon.LeakDetectionTest"
            + ".aLendPastTheThresholdIsLoggedOnceWithItsBorrowSiteAndItsReturnAtInfo(");
    assertThat(log).contains("INFO", "Pool 'leaky': the connection reported as a possible leak"
        + " came back after 129999 ms (create() called on thread '"
        + Thread.currentThread().getName() + "')");
    assertThat(kept.physical().isClosed()).as("reported, not taken away").isFalse();
    assertThat(pool.stats().idle()).isEqualTo(1);
  }

  @Test
  void aLendGivenBackInTimeIsNeitherReportedNorCounted() {
    ConnectionPool pool = pool(b -> b.maxSize(1).leakDetectionThreshold(Duration.ofSeconds(10)));
    String log;
    try (CapturedLogs logs = CapturedLogs.start(false)) {
      for (int i = 0; i < 3; i++) {
        Borrower b = Borrower.borrow(pool.create());
        time.advanceTimeBy(Duration.ofSeconds(9));
        b.release();
      }
      time.advanceTimeBy(Duration.ofMinutes(5));
      log = logs.text();
    }
    assertThat(log).doesNotContain("has been lent for", "possible leak", "came back");
    assertThat(pool.stats().leaks()).isZero();
  }

  @Test
  void eachLendOfOneConnectionIsReportedOnItsOwn() {
    ConnectionPool pool = pool(b -> b.maxSize(1).leakDetectionThreshold(Duration.ofSeconds(10)));
    String log;
    try (CapturedLogs logs = CapturedLogs.start(false)) {
      Borrower first = Borrower.borrow(pool.create());
      time.advanceTimeBy(Duration.ofSeconds(10));
      first.release();
      Disposable second = pool.withConnection(c -> Mono.never()).subscribe();
      assertThat(pool.stats().acquired()).isEqualTo(1);
      time.advanceTimeBy(Duration.ofSeconds(20));
      log = logs.text();
      second.dispose();
    }
    assertThat(count(log, "has been lent for")).isEqualTo(2);
    assertThat(count(log, "came back after")).isEqualTo(1);
    assertThat(firstFrame(log, 1)).as("withConnection's caller, past the pool's own frames")
        .startsWith("at io.lagoon.LeakDetectionTest.eachLendOfOneConnectionIsReportedOnItsOwn(");
    assertThat(pool.stats().leaks()).isEqualTo(2);
  }

  @Test
  void theBorrowSiteIsWhereCreateWasCalledNotWhereItWasSubscribed() {
    ConnectionPool pool = pool(b -> b.maxSize(1).leakDetectionThreshold(Duration.ofSeconds(1)));
    Mono<Connection> made = acquireFrom(pool);
    String log;
    try (CapturedLogs logs = CapturedLogs.start(false)) {
      Borrower.borrow(made);
      time.advanceTimeBy(Duration.ofSeconds(1));
      log = logs.text();
    }
    assertThat(firstFrame(log, 0)).startsWith("at io.lagoon.LeakDetectionTest.acquireFrom(");
  }

  private static Mono<Connection> acquireFrom(ConnectionPool pool) {
    return pool.create();
  }

  @Test
  void listenersHearOfEachPossibleLeakOnceWithHowLongItWasLent() {
    List<Duration> leaks = new CopyOnWriteArrayList<>();
    ConnectionPool pool = pool(b -> b.maxSize(2).leakDetectionThreshold(Duration.ofSeconds(4))
        .listener(new PoolListener() {
          @Override
          public void onLeak(long lentNanos) {
            leaks.add(Duration.ofNanos(lentNanos));
          }
        }));
    Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofSeconds(1));
    Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofMinutes(1));
    assertThat(leaks).as("housekeeping every 2 s: seen at 4 s and at 6 s - 1 s")
        .containsExactly(Duration.ofSeconds(4), Duration.ofSeconds(5));
  }

  @Test
  void offByDefaultCreateRecordsNothingAndNothingIsReported() {
    ConnectionPool pool = pool(b -> b.maxSize(1));
    assertThat(pool.create()).as("one Mono for every create(): no borrow site captured")
        .isSameAs(pool.create());
    String log;
    try (CapturedLogs logs = CapturedLogs.start(false)) {
      Borrower b = Borrower.borrow(pool.create());
      time.advanceTimeBy(Duration.ofHours(2));
      b.release();
      log = logs.text();
    }
    assertThat(log).doesNotContain("has been lent for", "possible leak", "came back");
    assertThat(pool.stats().leaks()).isZero();
  }

  @Test
  void withLeakDetectionEachCreateRecordsItsOwnSiteAndStillActsOnSubscription() {
    ConnectionPool pool = pool(b -> b.maxSize(1).leakDetectionThreshold(Duration.ofSeconds(1)));
    Mono<Connection> create = pool.create();
    assertThat(create).isNotSameAs(pool.create());
    assertThat(pool.stats().acquires()).as("lazy: nothing before subscription").isZero();
    StepVerifier.create(create.flatMap(c -> Mono.from(c.close()))).verifyComplete();
    StepVerifier.create(create.flatMap(c -> Mono.from(c.close()))).verifyComplete();
    assertThat(pool.stats().acquires()).isEqualTo(2);
  }

  @Test
  void aReportRacingTheReturnEitherHappensWithItsInfoOrNotAtAll() {
    ConnectionPool pool = pool(b -> b.maxSize(1).leakDetectionThreshold(Duration.ofSeconds(1)));
    int rounds = 500;
    String log;
    try (CapturedLogs logs = CapturedLogs.start(false)) {
      for (int i = 0; i < rounds; i++) {
        Borrower b = Borrower.borrow(pool.create()); // at a whole second: housekeeping every 500 ms
        time.advanceTimeBy(Duration.ofMillis(999));
        RaceTestUtils.race(() -> time.advanceTimeBy(Duration.ofMillis(1)), b::release);
      }
      log = logs.text();
    }
    int warnings = count(log, "has been lent for");
    assertThat(count(log, "came back after")).as("an INFO for every WARN, never one without")
        .isEqualTo(warnings);
    assertThat(pool.stats().leaks()).isEqualTo(warnings).isLessThanOrEqualTo(rounds);
    assertThat(pool.stats().idle()).isEqualTo(1);
  }

  // ---------------------------------------------------------------- abandoned handles

  /** Drops a lent connection without close() and waits until housekeeping took it back. */
  private String abandonOne(ConnectionPool pool) {
    try (CapturedLogs logs = CapturedLogs.start(false)) {
      // An operator that discards the connection as it arrives: nobody will ever close it.
      pool.create().filter(c -> false).subscribe();
      assertThat(pool.stats().acquired()).isEqualTo(1);
      for (int i = 0; i < 10 && pool.stats().abandoned() == 0; i++) {
        Gc.collect(); // the collector finds the handle unreachable and queues its watch
        time.advanceTimeBy(Duration.ofSeconds(30)); // housekeeping takes the connection back
      }
      assertThat(pool.stats().abandoned()).isEqualTo(1);
      return logs.text();
    }
  }

  @Test
  void anAbandonedHandleIsLoggedWithItsBorrowSite() {
    ConnectionPool pool = pool(b -> b.maxSize(1).maxAcquireTime(Duration.ofDays(1))
        .leakDetectionThreshold(Duration.ofHours(1)));
    String log = abandonOne(pool);
    assertThat(log).contains("Pool 'leaky': a lent connection was never closed and nothing refers"
        + " to it any more", "it was borrowed here:", SITE);
    assertThat(firstFrame(log, 0)).startsWith("at io.lagoon.LeakDetectionTest.abandonOne(");
  }

  @Test
  void withoutLeakDetectionTheAbandonedWarningSaysHowToSeeTheBorrowSite() {
    ConnectionPool pool = pool(b -> b.maxSize(1).maxAcquireTime(Duration.ofDays(1)));
    String log = abandonOne(pool);
    assertThat(log).contains("Pool 'leaky': a lent connection was never closed",
        "; set leakDetectionThreshold to log where it was borrowed");
    assertThat(log).doesNotContain(SITE);
  }
}
