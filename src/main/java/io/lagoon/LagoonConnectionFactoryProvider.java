package io.lagoon;

import io.lagoon.internal.DriverOptions;
import io.lagoon.internal.PoolOptions;
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
 * Lets {@link ConnectionFactories} open a Lagoon {@link ConnectionPool} from a URL such as
 *
 * <pre>
 * r2dbc:lagoon:postgresql://user:password@localhost:5432/shop?maxSize=20&amp;maxAcquireTime=5s
 * r2dbc:lagoon:mariadb://root@localhost:3306/test
 * r2dbc:lagoon:sqlserver:tcp://...              (driver sqlserver, protocol tcp)
 * </pre>
 *
 * <p>The part after {@code lagoon:} names the database driver to pool, optionally followed by that
 * driver's protocol, as with r2dbc-pool's {@code r2dbc:pool:} URLs. Programmatically, set option
 * {@code driver} to {@code lagoon} and option {@code protocol} to {@code <driver>} or {@code
 * <driver>:<protocol>}.
 *
 * <p>Pool options (see {@link PoolOptions}) configure the pool and are not passed to the driver;
 * every other option (host, port, user, password, database, {@code ssl}, {@code connectTimeout},
 * driver-specific ones...) goes to the driver unchanged. The pool options are r2dbc-pool's, with
 * the same names and value formats ({@code initialSize}, {@code maxSize}, {@code minIdle}, {@code
 * maxAcquireTime}, {@code maxCreateConnectionTime}, {@code poolName}, ...), plus Lagoon's own,
 * named like the {@link ConnectionPoolBuilder} methods ({@code maxPendingAcquires}, {@code
 * maxConcurrentCreates}, {@code maxCloseTime}, ...). Durations are ISO-8601 ({@code PT30S}) or a
 * whole number with a unit {@code ms}, {@code s}, {@code m}, {@code h} or {@code d} ({@code 30s}).
 *
 * <p>An option that is not a pool option but looks like one ({@code maxsize}, {@code max_size},
 * {@code maxSzie}: another case, separators between words, or up to two typing errors) and that
 * the driver does not declare (as a {@code public static} {@link io.r2dbc.spi.Option} constant of
 * its {@link ConnectionFactoryProvider}, or a standard one) is refused, naming the pool option it
 * resembles: passed to the driver, it would be ignored while the pool ran with its default.
 *
 * <p>Errors are {@link IllegalArgumentException}s that name the offending option and echo only its
 * value: never the URL or the password, and never the value of an unknown option.
 *
 * <p>Stateless and thread-safe.
 */
public final class LagoonConnectionFactoryProvider implements ConnectionFactoryProvider {

  /** The value of option {@code driver} that selects Lagoon. */
  public static final String LAGOON_DRIVER = "lagoon";

  /** r2dbc-pool's driver name: pooling its pool would nest a pool in a pool. */
  private static final String R2DBC_POOL_DRIVER = "pool";

  static final String URL_FORM = "r2dbc:lagoon:<driver>://... or"
      + " r2dbc:lagoon:<driver>:<protocol>://..., e.g. r2dbc:lagoon:postgresql://localhost/mydb";

  /** For {@link java.util.ServiceLoader}. */
  public LagoonConnectionFactoryProvider() {}

  /**
   * Builds a pool over the driver named by option {@code protocol}; it starts opening {@code
   * initialSize} connections in the background at once.
   *
   * @throws IllegalArgumentException if the driver is missing or unknown, or a pool option is
   *     malformed or out of range
   */
  @Override
  public ConnectionPool create(ConnectionFactoryOptions options) {
    return builder(options).build();
  }

  @Override
  public boolean supports(ConnectionFactoryOptions options) {
    Objects.requireNonNull(options, "options must not be null");
    return LAGOON_DRIVER.equals(options.getValue(ConnectionFactoryOptions.DRIVER));
  }

  @Override
  public String getDriver() {
    return LAGOON_DRIVER;
  }

  /** A builder configured from {@code options}, over the driver they name; not yet built. */
  static ConnectionPoolBuilder builder(ConnectionFactoryOptions options) {
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

    PoolOptions.Values poolOptions = PoolOptions.read(options);

    ConnectionFactoryOptions.Builder delegate = ConnectionFactoryOptions.builder()
        .from(options, option -> !isPoolOrRoutingOption(option.name()))
        .option(ConnectionFactoryOptions.DRIVER, driver);
    if (!protocol.isEmpty()) {
      delegate.option(ConnectionFactoryOptions.PROTOCOL, protocol);
    }
    ConnectionFactoryOptions delegateOptions = delegate.build();
    if (!ConnectionFactories.supports(delegateOptions)) {
      throw new IllegalArgumentException("No R2DBC driver '" + driver + "' to pool: the driver"
          + " after 'lagoon:' must be on the class path (" + URL_FORM + "); available drivers: "
          + availableDrivers());
    }
    PoolOptions.checkNoLookalikes(options,
        DriverOptions.declaredFor(delegateOptions, LAGOON_DRIVER),
        "r2dbc:lagoon:" + delegateSpec, driver);
    ConnectionFactory factory = ConnectionFactories.get(delegateOptions);

    ConnectionPoolBuilder builder = ConnectionPool.builder(factory);
    poolOptions.applyTo(builder);
    return builder;
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

  /** The drivers {@link ConnectionFactories} can find, as ConnectionFactories itself finds them. */
  private static String availableDrivers() {
    TreeSet<String> names = new TreeSet<>();
    Iterator<ConnectionFactoryProvider> providers = ServiceLoader
        .load(ConnectionFactoryProvider.class, ConnectionFactoryProvider.class.getClassLoader())
        .iterator();
    while (hasNext(providers)) {
      try {
        String name = providers.next().getDriver();
        if (!LAGOON_DRIVER.equals(name)) {
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
