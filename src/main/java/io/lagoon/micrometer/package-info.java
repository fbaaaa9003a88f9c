/**
 * Micrometer meters for Lagoon pools: {@link io.lagoon.micrometer.LagoonMetrics}. Micrometer is an
 * optional dependency: nothing outside this package refers to it.
 */
@NullMarked
package io.lagoon.micrometer;

import org.jspecify.annotations.NullMarked;
