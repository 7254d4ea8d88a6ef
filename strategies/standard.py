"""Standard baselines from Avalanche, registered as they are, with their papers' hyperparameters.

- lwf: Learning without Forgetting (Li & Hoiem 2016/2017);
- mas: Memory Aware Synapses (Aljundi et al. 2018);
- agem: Averaged GEM (Chaudhry et al. 2019).

Those needing a subclass, a fix or their own implementation have their own modules: si.py (SI), der.py
(DER and DER++, as Mammoth runs them), rehearsal.py (GDumb, ER-ACE), icarl.py (iCaRL). Where
Avalanche's signature default differs from the paper, the paper's value is given at registration and
cited next to it; hyperparameters that the harness owns (optimizer, learning rate, batch size, epochs)
are not the strategy's.
"""
from avalanche.training import AGEM, LwF, MAS

from forgetbench.strategies.registry import Memory, register_strategy

register_strategy(
    "lwf", memory=Memory(networks=1),  # the model as it was after the previous experience (the teacher)
    defaults={
        # Li & Hoiem, "Learning without Forgetting" (ECCV 2016 / TPAMI 2017), Sec. 3: loss balance weight
        # lambda_o = 1 and temperature T = 2 in all their experiments. Avalanche's loss is CE + alpha * KL(T)
        # (no T^2 factor), which is their loss. (van de Ven & Tolias 2019 weight the terms by 1/t and 1 - 1/t
        # with a T^2 factor instead: the same gradients up to a factor t with strategy.alpha=[0,4,8,12,16]
        # on a 5-experience stream.)
        "alpha": 1.0,
        "temperature": 2.0,
    },
    description="Learning without Forgetting: distillation from the previous model on the current data",
)(LwF)

register_strategy(
    "mas", memory=Memory(networks=2),  # importances and the parameters they anchor
    # No defaults to override, Avalanche's are the paper's where the paper has one:
    # lambda_reg = 1: Aljundi et al. 2018 (the authors' code, MAS.ipynb, sets lambda to 1, as FACIL's mas.py notes).
    # alpha = 0.5 (old and new importances averaged): FACIL's choice, which Avalanche follows; the paper's
    # code adds them instead, which no alpha reproduces. A judgement call, kept as Avalanche has it.
    description="Memory Aware Synapses: output-sensitivity importances, quadratic penalty",
)(MAS)

register_strategy(
    "agem", memory=Memory(samples="patterns_per_exp", per_experience=True),
    defaults={
        # Chaudhry et al., "Efficient Lifelong Learning with A-GEM" (ICLR 2019), Permuted MNIST: an episodic
        # memory of 250 samples per task (official code, fc_permute_mnist.py: --mem-size 25 per class x 10
        # classes per task) and a reference gradient from 256 memory samples (--eps-mem-batch 256;
        # Avalanche's default is 64). A judgement call for Split MNIST: the paper's per-task 250, not its
        # per-class rule (25 x 2 classes = 50 per experience, strategy.patterns_per_exp=50).
        "patterns_per_exp": 250,
        "sample_size": 256,
    },
    description="Averaged GEM: project the gradient so the loss on a memory sample does not increase",
)(AGEM)
