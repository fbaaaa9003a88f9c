package io.lagoon.internal;

import io.r2dbc.spi.Connection;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;
import org.jspecify.annotations.Nullable;
import reactor.core.Disposable;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Sinks;
import reactor.core.scheduler.Scheduler;

/**
 * The physical closes of the pool's connections, each bounded by maxCloseTime (see {@link Close}).
 * {@link PoolCore#destroy} moves an entry to CLOSING and starts its close here; the close frees
 * the entry's slot through {@link PoolCore#freeSlot} when it ends or is abandoned.
 *
 * <p>Lock-free; any method may run on any thread. A close's outcome is decided by one CAS on its
 * own state, so the driver's completion and the maxCloseTime timer may race.
 */
final class Closer {

  private final PoolCore core;
  private final PoolConfig config;
  private final Scheduler scheduler;
  private final LongAdder closedCount = new LongAdder();
  private final AtomicInteger abandonedCloses = new AtomicInteger();

  Closer(PoolCore core, PoolConfig config) {
    this.core = core;
    this.config = config;
    this.scheduler = core.scheduler();
  }

  /**
   * Starts closing {@code e}'s physical connection {@code c}; returns the completion of that (the
   * slot freed), already under way.
   */
  Mono<Void> close(PooledEntry e, Connection c) {
    Close close = new Close(e);
    close.start(c);
    return close.done.asMono();
  }

  /** Closes that ended, or were abandoned at maxCloseTime, and freed their slot. */
  long closed() {
    return closedCount.sum();
  }

  /**
   * One physical close, bounded by maxCloseTime. A close that ends in time frees its slot then. One
   * that hangs past maxCloseTime is abandoned: its slot is freed so the pool can replace the
   * connection, while the close goes on; at most {@code maxSize} abandoned closes may be pending
   * at once, beyond that a hanging close keeps its slot until it really ends. So the pool never has
   * more than {@code maxSize} connections open, opening or closing within maxCloseTime, and never
   * more than twice that many sockets, however the driver's closes hang.
   */
  private final class Close implements Runnable {
    private static final int RUNNING = 0;
    private static final int ENDED = 1;
    private static final int ABANDONED = 2;
    private static final int OVER_BUDGET = 3;

    final PooledEntry entry;
    final Sinks.Empty<Void> done = Sinks.empty();
    private final AtomicInteger state = new AtomicInteger(RUNNING);
    private volatile @Nullable Disposable timer;

    Close(PooledEntry entry) {
      this.entry = entry;
    }

    void start(Connection c) {
      try {
        timer = Timers.after(scheduler, config.maxCloseTime(), this);
      } catch (java.util.concurrent.RejectedExecutionException schedulerGone) {
        timer = null; // no bound without a scheduler: the slot waits for the close itself
      }
      Mono.defer(() -> Mono.from(c.close())).subscribe(null, err -> ended(), this::ended);
    }

    /** maxCloseTime passed first. */
    @Override
    public void run() {
      boolean counted = abandonedCloses.incrementAndGet() <= config.maxSize();
      if (!counted) {
        abandonedCloses.decrementAndGet();
      }
      if (!state.compareAndSet(RUNNING, counted ? ABANDONED : OVER_BUDGET)) {
        if (counted) {
          abandonedCloses.decrementAndGet(); // it ended meanwhile
        }
        return;
      }
      if (counted) {
        finish();
      }
    }

    private void ended() {
      Disposable t = timer;
      if (t != null) {
        t.dispose();
      }
      int before = state.getAndSet(ENDED);
      if (before == ABANDONED) {
        abandonedCloses.decrementAndGet(); // its slot was freed at maxCloseTime
      } else if (before != ENDED) {
        finish();
      }
    }

    private void finish() {
      closedCount.increment();
      core.freeSlot(entry);
      done.tryEmitEmpty();
    }
  }
}
