package io.lagoon.reliability;

import static io.lagoon.testing.Gc.usedHeapAfterGc;
import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.ConnectionPool;
import io.lagoon.PoolAcquireTimeoutException;
import io.lagoon.PoolClosedException;
import io.lagoon.PoolExhaustedException;
import io.lagoon.PoolStats;
import io.lagoon.testing.FakeConnectionFactory;
import io.r2dbc.spi.Connection;
import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.LongAdder;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.reactivestreams.Subscription;
import reactor.core.CoreSubscriber;
import reactor.core.publisher.Mono;
import reactor.test.scheduler.VirtualTimeScheduler;

/**
 * Scenario 5, overload: 100,000 acquires at once on a pool of 10 whose connections are all lent,
 * with {@code maxPendingAcquires} 1,000. The first 1,000 queue; every other one fails at once
 * (inside its own subscribe call) with {@link PoolExhaustedException}. The admitted waiters are
 * then served in turn (each borrower keeps its connection 100 ms) or time out at exactly their
 * {@code maxAcquireTime} of 2 s, in virtual time.
 *
 * <p>Heap: the retained bytes per pending waiter are measured with the production scheduler (its
 * timer per waiter included), as the heap in use after a full collection with the waiters queued
 * minus before, divided by the waiters; with the 1,000-waiter bound (the 99,000 rejected acquires
 * must retain nothing) and with an unbounded queue holding all 100,000. The bytes allocated per
 * acquire (garbage included: a rejection builds an exception) come from the thread's allocation
 * counter. Reported, and bounded generously.
 */
class OverloadScenarioTest {

  private static final int MAX_SIZE = 10;
  private static final int ACQUIRES = 100_000;
  private static final int MAX_PENDING = 1_000;
  private static final Duration MAX_ACQUIRE = Duration.ofSeconds(2);
  private static final Duration HOLD = Duration.ofMillis(100);
  private static final long MAX_BYTES_PER_WAITER = 2_048;

  private static final byte NONE = 0;
  private static final byte SERVED = 1;
  private static final byte EXHAUSTED = 2;
  private static final byte TIMED_OUT = 3;
  private static final byte CLOSED = 4;
  private static final byte OTHER = 5;

  private final List<ConnectionPool> pools = new ArrayList<>();
  private final VirtualTimeScheduler time = VirtualTimeScheduler.create();

  @AfterEach
  void cleanUp() {
    pools.forEach(ConnectionPool::dispose);
    time.dispose();
  }

  @Test
  void theExcessIsRejectedAtOnceEveryAdmittedWaiterIsServedOrTimesOutAndHeapStaysBounded() {
    // ---- rejection and service, in virtual time
    FakeConnectionFactory driver = new FakeConnectionFactory().scheduler(time);
    ConnectionPool pool = pool(ConnectionPool.builder(driver).scheduler(time)
        .maxPendingAcquires(MAX_PENDING).maxAcquireTime(MAX_ACQUIRE));
    List<Connection> held = holdAll(pool);

    byte[] outcome = new byte[ACQUIRES];
    long[] outcomeAtMillis = new long[ACQUIRES];
    long[] lastRejection = new long[1];
    int firstWrong = -1;
    long start = System.nanoTime();
    for (int i = 0; i < ACQUIRES; i++) {
      int index = i;
      pool.create().subscribe(new Outcome() {
        @Override
        public void onNext(Connection c) {
          outcome[index] = SERVED;
          outcomeAtMillis[index] = time.now(TimeUnit.MILLISECONDS);
          time.schedule(() -> Mono.from(c.close()).subscribe(), HOLD.toMillis(),
              TimeUnit.MILLISECONDS);
        }

        @Override
        public void onError(Throwable t) {
          outcome[index] = kind(t);
          outcomeAtMillis[index] = time.now(TimeUnit.MILLISECONDS);
          if (t instanceof PoolExhaustedException) {
            lastRejection[0] = System.nanoTime();
          }
        }
      });
      if (outcome[i] != (i < MAX_PENDING ? NONE : EXHAUSTED) && firstWrong < 0) {
        firstWrong = i; // checked after the burst, so that the check costs nothing inside it
      }
    }
    double toLastRejectionMs = (lastRejection[0] - start) / 1e6;
    assertThat(firstWrong).as("the first %,d acquires queued, every later one was rejected"
        + " inside its own subscribe call; acquire %d was not (outcome %d)", MAX_PENDING,
        firstWrong, firstWrong < 0 ? 0 : outcome[firstWrong]).isEqualTo(-1);
    PoolStats queued = pool.stats();
    assertThat(queued.pending()).isEqualTo(MAX_PENDING);
    assertThat(queued.rejections()).isEqualTo(ACQUIRES - MAX_PENDING);

    held.forEach(c -> Mono.from(c.close()).subscribe());
    for (long t = 0; t < MAX_ACQUIRE.toMillis() + 2 * HOLD.toMillis(); t += 10) {
      time.advanceTimeBy(Duration.ofMillis(10));
    }
    int served = 0;
    int timedOut = 0;
    for (int i = 0; i < MAX_PENDING; i++) {
      if (outcome[i] == SERVED) {
        served++;
        assertThat(outcomeAtMillis[i]).as("waiter %d served before its deadline", i)
            .isLessThan(MAX_ACQUIRE.toMillis());
      } else {
        assertThat(outcome[i]).as("waiter %d: served or timed out", i).isEqualTo(TIMED_OUT);
        assertThat(outcomeAtMillis[i]).as("waiter %d timed out at its deadline", i)
            .isEqualTo(MAX_ACQUIRE.toMillis());
        timedOut++;
      }
    }
    for (int i = 1; i < MAX_PENDING; i++) {
      assertThat(outcome[i] == SERVED && outcome[i - 1] != SERVED)
          .as("FIFO: waiter %d was not served before waiter %d", i - 1, i).isFalse();
    }
    PoolStats after = pool.stats();
    assertThat(served + timedOut).isEqualTo(MAX_PENDING);
    assertThat(served).as("served in turn, 10 at a time every 100 ms")
        .isBetween(MAX_SIZE * 19, MAX_SIZE * 21);
    assertThat(after.timeouts()).isEqualTo(timedOut);
    assertThat(after.pending()).isZero();
    assertThat(after.acquired()).as("every borrower gave its connection back: " + after).isZero();
    assertThat(after.idle()).isEqualTo(MAX_SIZE);
    assertThat(driver.opened()).as("the overload opened no connection beyond maxSize")
        .isEqualTo(MAX_SIZE);

    // ---- heap per pending waiter, production scheduler
    measureHeap(MAX_PENDING); // warm-up: classes loaded, code compiled
    Heap bounded = measureHeap(MAX_PENDING);
    Heap unbounded = measureHeap(Integer.MAX_VALUE);

    String figures = String.format("%,d acquires on %d connections, maxPendingAcquires %,d:"
            + " %,d rejected at once (last rejection after %.1f ms), %,d served, %,d timed out at"
            + " %d s; warm, the %,d acquires took %.1f ms bounded, %.1f ms unbounded; heap per"
            + " pending waiter %s bytes (bounded, %,d waiters; the rejected retain"
            + " nothing), %s bytes (unbounded, %,d waiters); allocated per"
            + " acquire %s bytes (bounded, rejections included), %s bytes (unbounded)",
        ACQUIRES, MAX_SIZE, MAX_PENDING, queued.rejections(), toLastRejectionMs, served, timedOut,
        MAX_ACQUIRE.toSeconds(), ACQUIRES, bounded.millis(), unbounded.millis(),
        bounded.retainedPerWaiter(), bounded.waiters(),
        unbounded.retainedPerWaiter(), unbounded.waiters(),
        bounded.allocatedPerAcquire(), unbounded.allocatedPerAcquire());
    System.out.println("[reliability] overload: " + figures);
    assertThat(bounded.waiters()).isEqualTo(MAX_PENDING);
    assertThat(unbounded.waiters()).isEqualTo(ACQUIRES);
    assertThat(bounded.retainedPerWaiter()).as(figures).isLessThan(MAX_BYTES_PER_WAITER);
    assertThat(unbounded.retainedPerWaiter()).as(figures).isLessThan(MAX_BYTES_PER_WAITER);
  }

  /** Heap figures of one run: waiters queued, retained bytes each, allocated bytes per acquire. */
  private record Heap(int waiters, long retainedPerWaiter, long allocatedPerAcquire,
      double millis) {}

  /**
   * Queues {@link #ACQUIRES} acquires behind 10 lent connections on the default scheduler
   * (timers included) with the given bound, and measures the heap they hold.
   */
  private Heap measureHeap(int maxPending) {
    FakeConnectionFactory driver = new FakeConnectionFactory();
    ConnectionPool pool = pool(ConnectionPool.builder(driver).maxPendingAcquires(maxPending)
        .maxAcquireTime(Duration.ofMinutes(10)));
    List<Connection> held = holdAll(pool);
    Tally tally = new Tally();

    long before = usedHeapAfterGc();
    long allocatedBefore = threadAllocatedBytes();
    long start = System.nanoTime();
    for (int i = 0; i < ACQUIRES; i++) {
      pool.create().subscribe(new Counted(tally));
    }
    double millis = (System.nanoTime() - start) / 1e6;
    long allocated = threadAllocatedBytes() - allocatedBefore;
    long after = usedHeapAfterGc();
    int waiters = pool.stats().pending();

    pool.close().block(Duration.ofSeconds(30));
    assertThat(tally.closedWhileWaiting.sum()).as("the waiters failed when the pool closed")
        .isEqualTo(waiters);
    assertThat(tally.rejected.sum()).isEqualTo(ACQUIRES - waiters);
    assertThat(tally.other.sum()).isZero();
    held.forEach(c -> Mono.from(c.close()).block(Duration.ofSeconds(5)));
    return new Heap(waiters, Math.max(0, after - before) / Math.max(1, waiters),
        allocated / ACQUIRES, millis);
  }

  private ConnectionPool pool(io.lagoon.ConnectionPoolBuilder builder) {
    ConnectionPool p = builder.maxSize(MAX_SIZE).initialSize(0).poolName("overload").build();
    pools.add(p);
    return p;
  }

  /** Acquires every connection of the pool (the test driver connects at once). */
  private static List<Connection> holdAll(ConnectionPool pool) {
    List<Connection> held = new ArrayList<>();
    for (int i = 0; i < MAX_SIZE; i++) {
      pool.create().subscribe(new Outcome() {
        @Override
        public void onNext(Connection c) {
          held.add(c);
        }

        @Override
        public void onError(Throwable t) {
          throw new AssertionError("holding the pool's connections failed", t);
        }
      });
    }
    assertThat(held).as("all %d connections lent", MAX_SIZE).hasSize(MAX_SIZE);
    return held;
  }

  private static byte kind(Throwable t) {
    if (t instanceof PoolExhaustedException) {
      return EXHAUSTED;
    }
    if (t instanceof PoolAcquireTimeoutException) {
      return TIMED_OUT;
    }
    return t instanceof PoolClosedException ? CLOSED : OTHER;
  }

  private static long threadAllocatedBytes() {
    return ((com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean())
        .getCurrentThreadAllocatedBytes();
  }

  /** Outcomes of the acquires of one heap measurement. */
  private static final class Tally {
    final LongAdder rejected = new LongAdder();
    final LongAdder closedWhileWaiting = new LongAdder();
    final LongAdder other = new LongAdder();
  }

  /** A subscriber of one reference (16 bytes), so that the figure is the pool's cost. */
  private static final class Counted extends Outcome {
    private final Tally tally;

    Counted(Tally tally) {
      this.tally = tally;
    }

    @Override
    public void onNext(Connection c) {
      tally.other.increment();
    }

    @Override
    public void onError(Throwable t) {
      (t instanceof PoolExhaustedException ? tally.rejected
          : t instanceof PoolClosedException ? tally.closedWhileWaiting : tally.other).increment();
    }
  }

  /** A subscriber that requests one connection; the smallest an application could write. */
  private abstract static class Outcome implements CoreSubscriber<Connection> {
    @Override
    public void onSubscribe(Subscription s) {
      s.request(1);
    }

    @Override
    public void onComplete() {}
  }
}
