"""PE-HEALTH over the network: mutual-TLS services for the centre, two servers and sensors.

Modules: :mod:`.credentials` (the centre as a CA; identity = certificate CN),
:mod:`.messages` (message checks: sequence numbers, ids, the public program as JSON),
:mod:`.wire` (numpy-only frame client for sensors), :mod:`.server`
(:class:`~.server.SecureServer`; its request pipeline in :mod:`.pipeline`; the
server-to-server link uses :meth:`medshield.transport.TcpChannel.exchange`, deadlock-free),
:mod:`.centre` (:func:`~.centre.deploy_model`, :class:`~.centre.ResultCollector`),
:mod:`.sensor` (:class:`~.sensor.Sensor`). The command line is
:mod:`medshield.secure.cli`; a loopback walk-through is in ``docs/secure-deployment.md``.

Nothing is imported eagerly: a sensor imports only :mod:`.sensor` (numpy, no torch).
"""
