package io.lagoon.testing;

import reactor.blockhound.BlockHound;
import reactor.blockhound.integration.BlockHoundIntegration;

/**
 * Lets the MariaDB R2DBC driver (org.mariadb:r2dbc-mariadb 1.4.0) through BlockHound where it makes
 * one harmless blocking call. Loaded by {@link BlockHound#install} through
 * {@code META-INF/services/reactor.blockhound.integration.BlockHoundIntegration}.
 *
 * <p>While encoding the first handshake response, on a Netty event loop, the driver initialises
 * {@code VersionFactory$VersionFactoryHolder}, whose static initializer reads the driver version
 * from a properties file inside the driver's jar ({@code RandomAccessFile#readBytes}). That happens
 * once per JVM, from the class path, not per connection; only that static initializer is allowed,
 * nothing else of the driver.
 */
public final class MariadbBlockHoundIntegration implements BlockHoundIntegration {

  @Override
  public void applyTo(BlockHound.Builder builder) {
    builder.allowBlockingCallsInside(
        "org.mariadb.r2dbc.util.VersionFactory$VersionFactoryHolder", "<clinit>");
  }
}
