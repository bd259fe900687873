from paddiff.interfaces import Scheduler


class IncompleteScheduler:
    """Looks like a scheduler but has no `step` or `add_noise` (and does not subclass Scheduler)."""

    @classmethod
    def from_config(cls, config):
        return cls()

    def set_timesteps(self, n):
        pass

    def scale_model_input(self, sample, timestep):
        return sample


class AbstractLeftover(Scheduler):
    """Subclasses the interface but leaves `step` abstract."""

    @classmethod
    def from_config(cls, config):
        return cls()

    def set_timesteps(self, n):
        pass

    def scale_model_input(self, sample, timestep):
        return sample

    def add_noise(self, original, noise, timesteps):
        return original


def some_function():
    return None
