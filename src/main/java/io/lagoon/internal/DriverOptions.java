package io.lagoon.internal;

import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.ConnectionFactoryProvider;
import java.util.Iterator;
import java.util.Objects;
import java.util.ServiceConfigurationError;
import java.util.ServiceLoader;
import java.util.TreeSet;
import org.jspecify.annotations.Nullable;

/**
 * The pooled driver's side of a Lagoon configuration: from options with {@code driver=lagoon} and
 * {@code protocol=<driver>[:<protocol>]} (what an {@code r2dbc:lagoon:<driver>:...} URL parses to),
 * the options of the database driver and its factory. Shared by the URL provider and the Spring
 * Boot auto-configuration, so both read options and fail the same way.
 */
public final class DriverOptions {

  /** The value of option {@code driver} that selects Lagoon. */
  public static final String LAGOON_DRIVER = "lagoon";

  /** r2dbc-pool's driver name: pooling its pool would nest a pool in a pool. */
  static final String R2DBC_POOL_DRIVER = "pool";

  public static final String URL_FORM = "r2dbc:lagoon:<driver>://... or"
      + " r2dbc:lagoon:<driver>:<protocol>://..., e.g. r2dbc:lagoon:postgresql://localhost/mydb";

  private DriverOptions() {}

  /**
   * The driver's options: every option except the pool's own, {@code driver} and {@code protocol}
   * taken from {@code options}' protocol.
   *
   * @throws IllegalArgumentException if no driver is named, or the named one is a pool
   */
  public static ConnectionFactoryOptions of(ConnectionFactoryOptions options) {
    Objects.requireNonNull(options, "options must not be null");
    String delegateSpec = delegateSpec(options);
    int colon = delegateSpec.indexOf(':');
    String driver = colon < 0 ? delegateSpec : delegateSpec.substring(0, colon);
    String protocol = colon < 0 ? "" : delegateSpec.substring(colon + 1);
    if (driver.isBlank()) {
      throw missingDriver();
    }
    if (driver.equalsIgnoreCase(LAGOON_DRIVER) || driver.equalsIgnoreCase(R2DBC_POOL_DRIVER)) {
      throw new IllegalArgumentException("r2dbc:lagoon:" + driver + ":... would put a pool in a"
          + " pool: '" + driver + "' is a connection pool, not a database driver; name the"
          + " database's driver after 'lagoon:': " + URL_FORM);
    }
    ConnectionFactoryOptions.Builder delegate = ConnectionFactoryOptions.builder()
        .from(options, option -> !isPoolOrRoutingOption(option.name()))
        .option(ConnectionFactoryOptions.DRIVER, driver);
    if (!protocol.isEmpty()) {
      delegate.option(ConnectionFactoryOptions.PROTOCOL, protocol);
    }
    return delegate.build();
  }

  /**
   * The driver's factory for {@code driverOptions} (from {@link #of} of {@code options}), once
   * no option in {@code options} looks like a misspelt pool option.
   *
   * @throws IllegalArgumentException naming the drivers on the class path if none supports them
   */
  public static ConnectionFactory factory(ConnectionFactoryOptions options,
      ConnectionFactoryOptions driverOptions) {
    if (!ConnectionFactories.supports(driverOptions)) {
      throw new IllegalArgumentException("No R2DBC driver '"
          + driverOptions.getValue(ConnectionFactoryOptions.DRIVER) + "' to pool: the driver"
          + " after 'lagoon:' must be on the class path (" + URL_FORM + "); available drivers: "
          + availableDrivers());
    }
    checkNoLookalikes(options, driverOptions);
    return ConnectionFactories.get(driverOptions);
  }

  /**
   * Refuses an option that is not the pool's and not declared by the driver but looks like a pool
   * option (another case, separators, a typo), naming the pool option it resembles.
   *
   * @throws IllegalArgumentException for such an option
   */
  private static void checkNoLookalikes(ConnectionFactoryOptions options,
      ConnectionFactoryOptions driverOptions) {
    String spec = delegateSpec(options);
    PoolOptions.checkNoLookalikes(options,
        DeclaredOptions.declaredFor(driverOptions, LAGOON_DRIVER), "r2dbc:lagoon:" + spec,
        String.valueOf(driverOptions.getValue(ConnectionFactoryOptions.DRIVER)));
  }

  /** Option {@code protocol}: {@code <driver>} or {@code <driver>:<protocol>}. */
  private static String delegateSpec(ConnectionFactoryOptions options) {
    @Nullable Object spec = options.getValue(ConnectionFactoryOptions.PROTOCOL);
    if (spec == null || spec.toString().isBlank()) {
      throw missingDriver();
    }
    if (!(spec instanceof CharSequence)) {
      throw new IllegalArgumentException("protocol (" + spec + ") must be a String naming the"
          + " driver to pool, not a " + spec.getClass().getName());
    }
    return spec.toString().strip();
  }

  private static IllegalArgumentException missingDriver() {
    return new IllegalArgumentException("No driver to pool: a Lagoon URL names the database's"
        + " driver after 'lagoon:': " + URL_FORM + " (programmatically: option driver=lagoon,"
        + " protocol=<driver>)");
  }

  /** Pool options configure the pool; driver and protocol are replaced by the delegate's. */
  private static boolean isPoolOrRoutingOption(String name) {
    return PoolOptions.isPoolOption(name)
        || name.equals(ConnectionFactoryOptions.DRIVER.name())
        || name.equals(ConnectionFactoryOptions.PROTOCOL.name());
  }

  /**
   * The database drivers {@link ConnectionFactories} can find, as ConnectionFactories itself finds
   * them: Lagoon and r2dbc-pool are left out, they are pools.
   */
  private static String availableDrivers() {
    TreeSet<String> names = new TreeSet<>();
    Iterator<ConnectionFactoryProvider> providers = ServiceLoader
        .load(ConnectionFactoryProvider.class, ConnectionFactoryProvider.class.getClassLoader())
        .iterator();
    while (hasNext(providers)) {
      try {
        String name = providers.next().getDriver();
        if (!LAGOON_DRIVER.equals(name) && !R2DBC_POOL_DRIVER.equals(name)) { // pools, not drivers
          names.add(name);
        }
      } catch (ServiceConfigurationError | RuntimeException e) {
        // a provider that fails to load is left out of this hint; the loader moves past it
      }
    }
    return names.isEmpty() ? "none" : String.join(", ", names);
  }

  /** Stops listing, rather than looping, when the service files themselves cannot be read. */
  private static boolean hasNext(Iterator<ConnectionFactoryProvider> providers) {
    try {
      return providers.hasNext();
    } catch (ServiceConfigurationError | RuntimeException e) {
      return false;
    }
  }
}
