package io.lagoon.benchmarks.support;

import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryMetadata;
import reactor.core.publisher.Mono;

/**
 * A zero-latency R2DBC driver: {@link #create()} emits a new {@link StubConnection} synchronously,
 * on the subscribing thread, and every connection method completes synchronously too.
 *
 * <p>{@code create()} returns {@code Mono.fromSupplier(StubConnection::new)} rather than {@code
 * Mono.just(new StubConnection())}: r2dbc-pool calls {@code create()} once when it is built and
 * subscribes to that same publisher for every connection it opens, so a {@code Mono.just} would
 * hand the same object to all of its slots. Both are synchronous and allocation-light; after the
 * pools are warmed up neither is called again by the benchmarks.
 */
public final class StubConnectionFactory implements ConnectionFactory {

  private static final ConnectionFactoryMetadata METADATA = () -> "stub";

  @Override
  public Mono<Connection> create() {
    return Mono.fromSupplier(StubConnection::new);
  }

  @Override
  public ConnectionFactoryMetadata getMetadata() {
    return METADATA;
  }
}
