package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import org.junit.jupiter.api.Test;
import reactor.blockhound.BlockingOperationError;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Schedulers;
import reactor.test.StepVerifier;

/**
 * Guards the guard: BlockHound is installed for the whole test run (by blockhound-junit-platform),
 * so a blocking call on a Reactor non-blocking thread must fail. If this test fails, the agent is
 * silently disabled and no other test would notice blocking calls.
 */
class BlockHoundActiveTest {

    @Test
    void blockingCallOnParallelSchedulerIsDetected() {
        Mono<Void> blocking = Mono.<Void>fromRunnable(() -> {
            try {
                Thread.sleep(1); // deliberately blocking
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }).subscribeOn(Schedulers.parallel());

        StepVerifier.create(blocking)
                .expectErrorSatisfies(error -> assertThat(error)
                        .isInstanceOf(BlockingOperationError.class)
                        .hasMessageContaining("Thread.sleep"))
                .verify(Duration.ofSeconds(10));
    }
}
