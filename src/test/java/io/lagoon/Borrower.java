package io.lagoon;

import io.lagoon.testing.FakeConnection;
import io.r2dbc.spi.Connection;
import java.util.concurrent.atomic.AtomicReference;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import org.reactivestreams.Subscription;
import reactor.core.CoreSubscriber;
import reactor.core.publisher.Mono;

/** A test subscriber to pool.create() that records what it got, where, and can cancel. */
final class Borrower implements CoreSubscriber<Connection> {

  private final AtomicReference<@Nullable Subscription> subscription = new AtomicReference<>();
  private final AtomicReference<@Nullable Connection> connection = new AtomicReference<>();
  private final AtomicReference<@Nullable Throwable> error = new AtomicReference<>();
  volatile @Nullable String deliveryThread;
  volatile int signals;

  static Borrower borrow(Publisher<? extends Connection> create) {
    Borrower b = new Borrower();
    create.subscribe(b);
    return b;
  }

  @Override
  public void onSubscribe(Subscription s) {
    subscription.set(s);
    s.request(1);
  }

  @Override
  public void onNext(Connection c) {
    deliveryThread = Thread.currentThread().getName();
    if (!connection.compareAndSet(null, c)) {
      throw new AssertionError("second connection delivered to one subscriber");
    }
    signals++;
  }

  @Override
  public void onError(Throwable t) {
    error.set(t);
    signals++;
  }

  @Override
  public void onComplete() {}

  void cancel() {
    Subscription s = subscription.get();
    if (s != null) {
      s.cancel();
    }
  }

  boolean got() {
    return connection.get() != null;
  }

  Connection connection() {
    Connection c = connection.get();
    if (c == null) {
      throw new AssertionError("no connection delivered" + (error.get() == null ? "" : ": " + error.get()));
    }
    return c;
  }

  @Nullable Throwable error() {
    return error.get();
  }

  /** The fake physical connection behind the handle. */
  FakeConnection physical() {
    return (FakeConnection) io.lagoon.testing.Peek.physical(connection());
  }

  void release() {
    Mono.from(connection().close()).block();
  }
}
