/** JMX view of a pool: see {@link io.lagoon.jmx.ConnectionPoolMXBean}. */
@NullMarked
package io.lagoon.jmx;

import org.jspecify.annotations.NullMarked;
