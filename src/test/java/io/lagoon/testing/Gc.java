package io.lagoon.testing;

import java.lang.management.ManagementFactory;
import java.lang.ref.PhantomReference;
import java.lang.ref.Reference;
import java.lang.ref.ReferenceQueue;

/**
 * The garbage collector, for tests whose subject is what it collects: a collection that is proven
 * to have happened, not a pause in the hope that one did. Blocking: call it from a test thread.
 */
public final class Gc {

  /** {@code System.gc()} calls a {@link #collect()} makes before it gives up. */
  static final int ATTEMPTS = 50;

  /** How long one attempt waits for the reference handler to queue the sentinel, in ms. */
  private static final long QUEUE_WAIT_MILLIS = 100;

  private Gc() {}

  /**
   * Runs {@code System.gc()} until an object made garbage just before is proven collected: its
   * phantom reference (the sentinel) came out of its queue. By then a collection found every
   * object that was unreachable when it began, and the JVM's reference handler has queued the
   * references it found with the sentinel. References found in the same collection may still be
   * on their way; the next call's sentinel comes after them (the handler queues one collection's
   * references before it takes the next one's). Throws an {@link AssertionError} when the JVM did
   * not collect within {@value #ATTEMPTS} calls (explicit collections disabled, say).
   */
  public static void collect() {
    ReferenceQueue<Object> queue = new ReferenceQueue<>();
    PhantomReference<Object> sentinel = new PhantomReference<>(new Object(), queue);
    try {
      for (int i = 0; i < ATTEMPTS; i++) {
        System.gc();
        if (queue.remove(QUEUE_WAIT_MILLIS) == sentinel) {
          return;
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AssertionError("interrupted while waiting for a garbage collection", e);
    } finally {
      Reference.reachabilityFence(sentinel);
    }
    throw new AssertionError("the JVM collected no garbage in " + ATTEMPTS + " calls of"
        + " System.gc() (is -XX:+DisableExplicitGC set?): a test that needs the collector cannot"
        + " run here");
  }

  /** The heap in use after three {@code System.gc()} calls, in bytes: a figure to compare. */
  public static long usedHeapAfterGc() {
    for (int i = 0; i < 3; i++) {
      System.gc();
    }
    return ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
  }
}
