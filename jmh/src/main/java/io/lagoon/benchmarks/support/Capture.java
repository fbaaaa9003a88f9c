package io.lagoon.benchmarks.support;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.concurrent.locks.LockSupport;
import org.reactivestreams.Subscription;
import reactor.core.CoreSubscriber;

/**
 * A tiny reusable subscriber for one {@code Mono} at a time: it requests unbounded, keeps the value
 * and the terminal signal, and lets the thread that subscribed either demand that the {@code Mono}
 * already completed ({@link #now()}: the synchronous, uncontended case) or wait for it ({@link
 * #await()}: spin briefly, then park until the delivering thread unparks it).
 *
 * <p>Reused for every operation of one benchmark thread, so it adds no allocation of its own to
 * the figures: call {@link #arm()} before each subscribe. Not for concurrent use by two owners.
 */
public final class Capture<T> implements CoreSubscriber<T> {

  private static final VarHandle DONE;
  /** Busy-wait rounds before parking; -Dcapture.spins=N in the forked JVM changes it. */
  private static final int SPINS = Integer.getInteger("capture.spins", 128);

  static {
    try {
      DONE = MethodHandles.lookup().findVarHandle(Capture.class, "done", boolean.class);
    } catch (ReflectiveOperationException e) {
      throw new ExceptionInInitializerError(e);
    }
  }

  private Thread owner;
  @SuppressWarnings("unused") // accessed through DONE, release/acquire
  private boolean done;
  private T value;
  private Throwable error;
  private boolean remote;

  /** Prepares for the next subscribe, made by the current thread. */
  public Capture<T> arm() {
    owner = Thread.currentThread();
    value = null;
    error = null;
    remote = false;
    DONE.setRelease(this, false);
    return this;
  }

  @Override
  public void onSubscribe(Subscription s) {
    s.request(Long.MAX_VALUE);
  }

  @Override
  public void onNext(T t) {
    value = t;
  }

  @Override
  public void onError(Throwable t) {
    error = t;
    signal();
  }

  @Override
  public void onComplete() {
    signal();
  }

  private void signal() {
    Thread o = owner;
    boolean elsewhere = o != Thread.currentThread();
    remote = elsewhere;
    DONE.setRelease(this, true);
    if (elsewhere) {
      LockSupport.unpark(o);
    }
  }

  /** After completion: whether the terminal signal came from a thread other than the owner's. */
  public boolean completedElsewhere() {
    return remote;
  }

  public boolean isDone() {
    return (boolean) DONE.getAcquire(this);
  }

  /** The value of a {@code Mono} that must already have completed on the subscribing thread. */
  public T now() {
    if (!isDone()) {
      throw new IllegalStateException("expected a synchronous completion, but the publisher has"
          + " not completed on the subscribing thread: the measurement would be invalid");
    }
    return result();
  }

  /** The value, once the {@code Mono} completed on whatever thread: spins a little, then parks. */
  public T await() {
    for (int i = 0; !isDone(); i++) {
      if (i < SPINS) {
        Thread.onSpinWait();
      } else {
        LockSupport.park(this);
      }
    }
    return result();
  }

  private T result() {
    Throwable e = error;
    if (e != null) {
      throw new IllegalStateException("the publisher failed", e);
    }
    return value;
  }
}
