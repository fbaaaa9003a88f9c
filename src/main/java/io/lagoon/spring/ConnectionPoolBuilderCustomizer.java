package io.lagoon.spring;

import io.lagoon.ConnectionPoolBuilder;

/**
 * A bean that adjusts the auto-configured pool before it is built, after the properties were
 * applied: for what properties cannot hold, such as {@code postAllocate}, {@code preRelease} or a
 * {@link io.lagoon.PoolListener}. Customizers run in their {@code @Order}.
 */
@FunctionalInterface
public interface ConnectionPoolBuilderCustomizer {

  /** Adjusts {@code builder}. */
  void customize(ConnectionPoolBuilder builder);
}
