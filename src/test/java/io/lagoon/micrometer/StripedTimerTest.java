package io.lagoon.micrometer;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/** The lean timers' accumulator: exact counts and totals, and Micrometer's windowed maximum. */
class StripedTimerTest {

  private static final long WINDOW = StripedTimer.EXPIRY_NANOS / StripedTimer.WINDOWS;

  private final AtomicLong clock = new AtomicLong(1_000);
  private final StripedTimer timer = new StripedTimer(clock::get, 1);

  @Test
  void countsTotalsAndTheLongestDuration() {
    timer.record(3);
    timer.record(0);
    timer.record(7);
    timer.record(5);
    assertThat(timer.count()).isEqualTo(4);
    assertThat(timer.totalNanos()).isEqualTo(15);
    assertThat(timer.maxNanos()).isEqualTo(7);
  }

  @Test
  void aNegativeDurationIsIgnoredAsMicrometerDoes() {
    timer.record(-5);
    assertThat(timer.count()).isZero();
    assertThat(timer.totalNanos()).isZero();
    assertThat(timer.maxNanos()).isZero();
  }

  @Test
  void theOverflowAddsToTheSameFigures() {
    timer.record(4);
    timer.recordInOverflow(9);
    timer.recordInOverflow(0);
    assertThat(timer.count()).isEqualTo(3);
    assertThat(timer.totalNanos()).isEqualTo(13);
    assertThat(timer.maxNanos()).isEqualTo(9);
  }

  @Test
  void cellsArePowersOfTwoForTwiceTheProcessorsUpTo32() {
    assertThat(new StripedTimer(clock::get, 1).cells()).isEqualTo(2);
    assertThat(new StripedTimer(clock::get, 3).cells()).isEqualTo(8);
    assertThat(new StripedTimer(clock::get, 16).cells()).isEqualTo(32);
    assertThat(new StripedTimer(clock::get, 96).cells()).isEqualTo(32);
  }

  @Test
  void theMaximumIsTheLongestOfTheLastTwoMinutesAsMicrometersIs() {
    timer.record(50);
    assertThat(timer.maxNanos()).isEqualTo(50);
    clock.addAndGet(WINDOW); // 40 s
    assertThat(timer.maxNanos()).isEqualTo(50);
    timer.record(20);
    clock.addAndGet(WINDOW); // 80 s
    assertThat(timer.maxNanos()).isEqualTo(50);
    clock.addAndGet(WINDOW); // 120 s: the 50 has aged out, the 20 of 40 s has not
    assertThat(timer.maxNanos()).isEqualTo(20);
    clock.addAndGet(WINDOW); // 160 s
    assertThat(timer.maxNanos()).isZero();
    assertThat(timer.count()).as("the count and total never decay").isEqualTo(2);
    assertThat(timer.totalNanos()).isEqualTo(70);
  }

  @Test
  void aReadLongAfterThePreviousOneStillSeesWhatWasRecordedSince() {
    assertThat(timer.maxNanos()).isZero();
    clock.addAndGet(10 * StripedTimer.EXPIRY_NANOS);
    timer.record(30); // recorded just before the read; its time is not known
    assertThat(timer.maxNanos()).isEqualTo(30);
    assertThat(timer.maxNanos()).as("read again at once").isEqualTo(30);
    clock.addAndGet(StripedTimer.EXPIRY_NANOS);
    assertThat(timer.maxNanos()).as("a whole expiry after that read").isZero();
  }

  /**
   * Eight threads share two cells, half of them through the cells (falling back to the overflow
   * when both are busy), half straight into the overflow; a reader polls all the while. Nothing
   * is lost or counted twice, and no figure ever goes down.
   */
  @Test
  void concurrentRecordsAddUpExactlyAndReadsNeverGoBackwards() throws Exception {
    int threads = 8;
    int perThread = 200_000;
    CyclicBarrier start = new CyclicBarrier(threads + 1);
    AtomicBoolean writing = new AtomicBoolean(true);
    ExecutorService pool = Executors.newFixedThreadPool(threads + 1);
    try {
      List<Future<?>> writers = new ArrayList<>();
      for (int t = 0; t < threads; t++) {
        boolean overflow = t % 2 == 1;
        int seed = t;
        writers.add(pool.submit(() -> {
          start.await();
          for (int i = 0; i < perThread; i++) {
            long nanos = (seed * 31L + i) % 1_000 + 1;
            if (overflow) {
              timer.recordInOverflow(nanos);
            } else {
              timer.record(nanos);
            }
          }
          return null;
        }));
      }
      Future<Long> reader = pool.submit(() -> {
        start.await();
        long reads = 0;
        long lastCount = 0;
        long lastTotal = 0;
        while (writing.get()) {
          long count = timer.count();
          long total = timer.totalNanos();
          assertThat(count).isGreaterThanOrEqualTo(lastCount);
          assertThat(total).isGreaterThanOrEqualTo(lastTotal);
          lastCount = count;
          lastTotal = total;
          reads++;
        }
        return reads;
      });
      for (Future<?> w : writers) {
        w.get(60, TimeUnit.SECONDS);
      }
      writing.set(false);
      assertThat(reader.get(60, TimeUnit.SECONDS)).isPositive();
    } finally {
      pool.shutdownNow();
    }

    long expectedTotal = 0;
    for (int t = 0; t < threads; t++) {
      for (int i = 0; i < perThread; i++) {
        expectedTotal += (t * 31L + i) % 1_000 + 1;
      }
    }
    assertThat(timer.count()).isEqualTo((long) threads * perThread);
    assertThat(timer.totalNanos()).isEqualTo(expectedTotal);
    assertThat(timer.maxNanos()).isEqualTo(1_000);
  }
}
