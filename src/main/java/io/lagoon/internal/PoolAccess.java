package io.lagoon.internal;

import io.lagoon.ConnectionPool;
import java.util.Objects;
import java.util.function.Function;
import org.jspecify.annotations.Nullable;

/**
 * Lets Lagoon's own integrations (meters, Spring Boot health) reach a pool's core without making
 * it part of {@link ConnectionPool}'s public API. {@link ConnectionPool} installs the accessor
 * when its class initializes, which happens before any pool exists.
 */
public final class PoolAccess {

  private static volatile @Nullable Function<ConnectionPool, PoolCore> accessor;

  private PoolAccess() {}

  /** Called once, by {@link ConnectionPool}'s static initializer. */
  public static void install(Function<ConnectionPool, PoolCore> access) {
    accessor = Objects.requireNonNull(access, "access must not be null");
  }

  /** The core of {@code pool}. */
  public static PoolCore core(ConnectionPool pool) {
    Objects.requireNonNull(pool, "pool must not be null");
    Function<ConnectionPool, PoolCore> a = accessor;
    if (a == null) {
      throw new IllegalStateException("ConnectionPool did not install its accessor");
    }
    return a.apply(pool);
  }
}
