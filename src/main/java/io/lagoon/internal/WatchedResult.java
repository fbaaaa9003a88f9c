package io.lagoon.internal;

import io.r2dbc.spi.Readable;
import io.r2dbc.spi.Result;
import io.r2dbc.spi.Row;
import io.r2dbc.spi.RowMetadata;
import java.util.function.BiFunction;
import java.util.function.Function;
import java.util.function.Predicate;
import org.reactivestreams.Publisher;

/**
 * A result whose publishers check the handle when subscribed (a result read after close() fails
 * and touches nothing), count as open streams until they end (a connection closed while its rows
 * are still being read is replaced), and report their errors to the pool: a connection killed
 * mid-query often fails while its rows are read, after {@code execute()} already emitted it.
 */
final class WatchedResult implements Result {

  private final PooledConnection owner;
  private final Result delegate;

  WatchedResult(PooledConnection owner, Result delegate) {
    this.owner = owner;
    this.delegate = delegate;
  }

  @Override
  public Publisher<Long> getRowsUpdated() {
    return owner.watchLive("Result.getRowsUpdated", delegate::getRowsUpdated);
  }

  @Override
  public <T> Publisher<T> map(BiFunction<Row, RowMetadata, ? extends T> mapping) {
    PooledConnection.requireArg(mapping, "mapping");
    return owner.watchLive("Result.map", () -> delegate.map(mapping));
  }

  @Override
  public <T> Publisher<T> map(Function<? super Readable, ? extends T> mapping) {
    PooledConnection.requireArg(mapping, "mapping");
    return owner.watchLive("Result.map", () -> delegate.map(mapping));
  }

  @Override
  public Result filter(Predicate<Segment> filter) {
    PooledConnection.requireArg(filter, "filter");
    return new WatchedResult(owner, delegate.filter(filter));
  }

  @Override
  public <T> Publisher<T> flatMap(Function<Segment, ? extends Publisher<? extends T>> mapping) {
    PooledConnection.requireArg(mapping, "mapping");
    return owner.watchLive("Result.flatMap", () -> delegate.flatMap(mapping));
  }
}
