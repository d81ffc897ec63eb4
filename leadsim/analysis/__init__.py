"""What is read off a result Dataset: risk metrics with Monte Carlo errors, figures, HTML reports."""
