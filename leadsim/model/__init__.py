"""The cost model: keyed random numbers, the spliced cost marginal, the stationary cohort, macro drivers,
outlier-relief pricing, and the numba kernel (:mod:`leadsim.model._kernel`, every ``@njit`` function)."""
