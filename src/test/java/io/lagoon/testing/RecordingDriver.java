package io.lagoon.testing;

import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryMetadata;
import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.ConnectionFactoryProvider;
import io.r2dbc.spi.Option;
import org.reactivestreams.Publisher;

/**
 * A test-only R2DBC driver named {@value #DRIVER}, discovered through
 * {@code META-INF/services/io.r2dbc.spi.ConnectionFactoryProvider} in the test resources. Its
 * factories remember the options they were created from, so that tests can see exactly what a
 * pool passed on to its driver; connections come from a {@link FakeConnectionFactory}.
 */
public final class RecordingDriver implements ConnectionFactoryProvider {

  public static final String DRIVER = "recording";

  /**
   * A driver option that looks like the pool option {@code minIdle}: declared here as drivers
   * declare theirs, so a Lagoon URL over this driver passes it on instead of refusing it.
   */
  public static final Option<Integer> MAX_IDLE = Option.valueOf("maxIdle");

  @Override
  public RecordingFactory create(ConnectionFactoryOptions options) {
    return new RecordingFactory(options);
  }

  @Override
  public boolean supports(ConnectionFactoryOptions options) {
    return DRIVER.equals(options.getValue(ConnectionFactoryOptions.DRIVER));
  }

  @Override
  public String getDriver() {
    return DRIVER;
  }

  /** A factory that remembers its options and opens fake connections. */
  public static final class RecordingFactory implements ConnectionFactory {

    private final ConnectionFactoryOptions options;
    private final FakeConnectionFactory connections = new FakeConnectionFactory();

    RecordingFactory(ConnectionFactoryOptions options) {
      this.options = options;
    }

    /** The options this factory was created from. */
    public ConnectionFactoryOptions options() {
      return options;
    }

    /** The fake driver behind this factory. */
    public FakeConnectionFactory connections() {
      return connections;
    }

    @Override
    public Publisher<? extends Connection> create() {
      return connections.create();
    }

    @Override
    public ConnectionFactoryMetadata getMetadata() {
      return connections.getMetadata();
    }

    @Override
    public String toString() {
      return "RecordingFactory" + options; // ConnectionFactoryOptions masks sensitive values
    }
  }
}
