"""Published sizes of the conv-net benchmark's models, which tests/test_benchmarks.py and
tests/test_benchmarks_cnn.py check the parameter trees and XLA's FLOP counts against."""

RESNET18_PARAMS = 11_181_642  # torchvision.models.resnet18(num_classes=10)
# Lecture 10 Table 1 (line 2446): LeNet-5's connections, one multiply-add each in a forward pass.
LENET5_CONNECTIONS = {"C1": 117_600, "C3": 240_000, "F5": 48_000, "F6": 10_080, "output": 840}
LENET5_WEIGHTS = 150 + 2400 + 48_000 + 10_080 + 840  # Table 1's "# weights" column
LENET5_BIASES = 6 + 16 + 120 + 84 + 10  # one per map or unit
# A training step (Lecture 10 after Table 1): the forward pass, then two more passes for the
# weight and input gradients, less the input gradient of C1, which nothing needs.
LENET5_STEP_MULTIPLY_ADDS = 3 * sum(LENET5_CONNECTIONS.values()) - LENET5_CONNECTIONS["C1"]
