/**
 * The pool's machinery. Not a public API: anything here may change in any release.
 *
 * <p>{@link io.lagoon.internal.PoolCore} owns the state machine; its header comment states the
 * invariants and which thread may run what.
 */
@NullMarked
package io.lagoon.internal;

import org.jspecify.annotations.NullMarked;
