package io.lagoon.internal;

import io.r2dbc.spi.Batch;
import io.r2dbc.spi.Result;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;

/** A batch that runs only while its connection is lent, noting what its statements may change. */
final class GuardedBatch implements Batch {

  private final PooledConnection owner;
  private final Batch delegate;
  private volatile int effects;

  GuardedBatch(PooledConnection owner, Batch delegate) {
    this.owner = owner;
    this.delegate = delegate;
  }

  @Override
  public Batch add(String sql) {
    PooledConnection.requireArg(sql, "sql");
    owner.live("createBatch().add");
    delegate.add(sql);
    effects |= SqlEffects.of(sql);
    return this;
  }

  @Override
  public Publisher<? extends Result> execute() {
    return owner.call("createBatch().execute", effects, c -> Flux.<Result>from(delegate.execute()))
        .map(owner::watchResult);
  }
}
