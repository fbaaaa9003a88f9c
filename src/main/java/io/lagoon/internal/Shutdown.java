package io.lagoon.internal;

import java.time.Duration;
import java.util.concurrent.atomic.AtomicBoolean;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Sinks;

/**
 * The pool's shutdown: refusing acquires, closing idle connections and connects in flight, then
 * lent ones as they come back (or under their borrowers, after a grace), and telling when that is
 * done. {@link PoolCore} keeps the {@code closing} flag its hot paths read; shutdown sets it once,
 * after winning {@code closed}, then closes the idle entries (I6 in {@link PoolCore}).
 *
 * <p>Lock-free; any method may run on any thread. Whoever frees a slot or lends an entry while the
 * pool is closing calls {@link #checkTerminated}, so the last one to leave completes the sinks.
 */
final class Shutdown {

  private final PoolCore core;
  private final Slots slots;
  private final Lifecycle lifecycle;
  private final Creator creator;
  private final PoolConfig config;
  private final AtomicBoolean closed = new AtomicBoolean();
  private volatile boolean forceClosed;
  private final Sinks.Empty<Void> idleClosed = Sinks.empty();
  private final Sinks.Empty<Void> terminated = Sinks.empty();

  Shutdown(PoolCore core, Lifecycle lifecycle, Creator creator) {
    this.core = core;
    this.slots = core.slots();
    this.lifecycle = lifecycle;
    this.creator = creator;
    this.config = core.config();
  }

  /** Starts shutdown; completes when idle connections and connects in flight are closed. */
  Mono<Void> close() {
    return Mono.defer(() -> {
      shutdown();
      return idleClosed.asMono();
    });
  }

  /**
   * Starts shutdown; lent connections may finish for up to {@code grace}, then they are closed
   * under their borrowers. Completes when every connection is closed.
   */
  Mono<Void> closeGracefully(Duration grace) {
    return Mono.defer(() -> {
      shutdown();
      return terminated.asMono()
          .timeout(grace, core.scheduler())
          .onErrorResume(java.util.concurrent.TimeoutException.class, t -> {
            closeLent();
            return terminated.asMono();
          });
    });
  }

  /** Starts shutdown and waits, for a bounded time, until idle connections are closed. */
  void dispose() {
    shutdown();
    try {
      idleClosed.asMono().block(config.maxCloseTime().plusSeconds(1));
    } catch (RuntimeException e) {
      // Not allowed to block on this thread, or closing took too long: shutdown goes on in the
      // background; dispose() has done what it promises (new acquires are refused).
    }
  }

  private void shutdown() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    core.markClosing();
    // Housekeeping goes on until every connection is closed: it takes back connections whose
    // handles are collected without close() and reports lends past leakDetectionThreshold, which a
    // closing pool still waits for; it stops once the pool has terminated.
    core.waiters().failAll();
    creator.shutdown();
    for (int i = 0; i < slots.length(); i++) {
      PooledEntry e = slots.get(i);
      if (e != null && e.takeIdle(false) != -1) {
        core.destroy(e);
      }
    }
    checkTerminated();
  }

  private void closeLent() {
    forceClosed = true; // before the scan: a lend after it sees the flag (lentWhileClosing)
    for (int i = 0; i < slots.length(); i++) {
      PooledEntry e = slots.get(i);
      if (e == null) {
        continue;
      }
      long s = e.stamp();
      if (PooledEntry.state(s) == PooledEntry.LENT
          && e.cas(s, PooledEntry.withState(s, PooledEntry.OWNED))) {
        core.destroy(e);
      }
    }
  }

  /**
   * A lend that raced with shutdown: a forced close (closeLent) that already ran closes it now,
   * under its borrower; otherwise close() may now be done waiting for the entries it could close.
   */
  void lentWhileClosing(PooledEntry e, long s) {
    if (forceClosed && e.cas(s, PooledEntry.withState(s, PooledEntry.OWNED))) {
      core.destroy(e);
    } else {
      checkTerminated();
    }
  }

  void checkTerminated() {
    boolean empty = true;
    boolean onlyLent = true;
    for (int i = 0; i < slots.length(); i++) {
      PooledEntry e = slots.get(i);
      if (e != null) {
        empty = false;
        if (e.state() != PooledEntry.LENT) {
          onlyLent = false;
        }
      }
    }
    if (onlyLent && creator.creating() == 0) {
      idleClosed.tryEmitEmpty();
    }
    if (empty && creator.creating() == 0) {
      lifecycle.stop();
      idleClosed.tryEmitEmpty();
      terminated.tryEmitEmpty();
      core.events().terminated();
    }
  }
}
