"""GraphQL documents sent to dagster-webserver (checked against the installed schema by the tests)."""

RUN_FIELDS = """
fragment RunFields on Run {
  runId
  jobName
  status
  creationTime
  startTime
  endTime
  updateTime
  canTerminate
  rootRunId
  parentRunId
  runConfig
  tags { key value }
  assetSelection { path }
  stats {
    __typename
    ... on RunStatsSnapshot {
      stepsSucceeded stepsFailed materializations expectations
      enqueuedTime launchTime startTime endTime
    }
  }
}
"""

LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on RunConfigValidationInvalid { pipelineName errors { __typename message path reason } }
  }
}
"""

GET_RUN = (
    """
query GetRun($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { ...RunFields }
    ... on Error { message }
  }
}
"""
    + RUN_FIELDS
)

LIST_RUNS = (
    """
query ListRuns($filter: RunsFilter, $cursor: String, $limit: Int) {
  runsOrError(filter: $filter, cursor: $cursor, limit: $limit) {
    __typename
    ... on Runs { results { ...RunFields } }
    ... on Error { message }
  }
}
"""
    + RUN_FIELDS
)

RUN_LOGS = """
query RunLogs($runId: ID!, $afterCursor: String, $limit: Int) {
  logsForRun(runId: $runId, afterCursor: $afterCursor, limit: $limit) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { message timestamp level stepKey eventType }
        ... on ExecutionStepFailureEvent { error { message } }
        ... on RunFailureEvent { error { message } }
        ... on EngineEvent { error { message } }
        ... on ResourceInitFailureEvent { error { message } }
        ... on HookErroredEvent { error { message } }
      }
    }
    ... on Error { message }
  }
}
"""

TERMINATE_RUN = """
mutation TerminateRun($runId: String!, $terminatePolicy: TerminateRunPolicy) {
  terminateRun(runId: $runId, terminatePolicy: $terminatePolicy) {
    __typename
    ... on TerminateRunSuccess { run { runId status } }
    ... on TerminateRunFailure { message run { runId status } }
    ... on Error { message }
  }
}
"""

RELOAD_LOCATION = """
mutation ReloadLocation($name: String!) {
  reloadRepositoryLocation(repositoryLocationName: $name) {
    __typename
    ... on WorkspaceLocationEntry {
      name
      loadStatus
      locationOrLoadError {
        __typename
        ... on RepositoryLocation { repositories { name } }
        ... on PythonError { message }
      }
    }
    ... on Error { message }
  }
}
"""

SCHEDULE_FIELDS = """
fragment ScheduleFields on Schedule {
  id
  name
  pipelineName
  cronSchedule
  executionTimezone
  description
  defaultStatus
  scheduleState { status }
  futureTicks(limit: 1) { results { timestamp } }
}
"""

GET_SCHEDULE = (
    """
query GetSchedule($scheduleSelector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $scheduleSelector) {
    __typename
    ... on Schedule { ...ScheduleFields }
    ... on Error { message }
  }
}
"""
    + SCHEDULE_FIELDS
)

START_SCHEDULE = """
mutation StartSchedule($scheduleSelector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $scheduleSelector) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on Error { message }
  }
}
"""

RESET_SCHEDULE = """
mutation ResetSchedule($scheduleSelector: ScheduleSelector!) {
  resetSchedule(scheduleSelector: $scheduleSelector) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on Error { message }
  }
}
"""

STOP_SCHEDULE = """
mutation StopSchedule($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on Error { message }
  }
}
"""

SENSOR_FIELDS = """
fragment SensorFields on Sensor {
  id
  name
  description
  defaultStatus
  minIntervalSeconds
  targets { pipelineName }
  sensorState { status }
}
"""

GET_SENSOR = (
    """
query GetSensor($sensorSelector: SensorSelector!) {
  sensorOrError(sensorSelector: $sensorSelector) {
    __typename
    ... on Sensor { ...SensorFields }
    ... on Error { message }
  }
}
"""
    + SENSOR_FIELDS
)

START_SENSOR = """
mutation StartSensor($sensorSelector: SensorSelector!) {
  startSensor(sensorSelector: $sensorSelector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on Error { message }
  }
}
"""

STOP_SENSOR = """
mutation StopSensor($id: String!) {
  stopSensor(id: $id) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on Error { message }
  }
}
"""

WORKSPACE_INDEX = (
    """
query WorkspaceIndex {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes {
        name
        location { name }
        jobs { name }
        assetNodes { assetKey { path } }
        schedules { ...ScheduleFields }
        sensors { ...SensorFields }
      }
    }
    ... on Error { message }
  }
}
"""
    + SCHEDULE_FIELDS
    + SENSOR_FIELDS
)

CODE_LOCATIONS = """
query CodeLocations {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { repositories { name } }
          ... on PythonError { message }
        }
      }
    }
    ... on Error { message }
  }
}
"""

METADATA_ENTRY_FIELDS = """
fragment MetadataEntryFields on MetadataEntry {
  __typename
  label
  ... on IntMetadataEntry { intValue intRepr }
  ... on FloatMetadataEntry { floatValue }
  ... on TextMetadataEntry { text }
  ... on BoolMetadataEntry { boolValue }
  ... on JsonMetadataEntry { jsonString }
}
"""

# runs with the metadata their materializations recorded (row counts, phase timings) and the total count
LIST_RUNS_WITH_METADATA = (
    """
query ListRunsWithMetadata($filter: RunsFilter, $cursor: String, $limit: Int) {
  runsOrError(filter: $filter, cursor: $cursor, limit: $limit) {
    __typename
    ... on Runs {
      count
      results {
        ...RunFields
        assetMaterializations { assetKey { path } metadataEntries { ...MetadataEntryFields } }
      }
    }
    ... on Error { message }
  }
}
"""
    + RUN_FIELDS
    + METADATA_ENTRY_FIELDS
)

LIST_RUN_IDS = """
query ListRunIds($filter: RunsFilter, $cursor: String, $limit: Int) {
  runsOrError(filter: $filter, cursor: $cursor, limit: $limit) {
    __typename
    ... on Runs { results { runId } }
    ... on Error { message }
  }
}
"""

# one location's repository as it is now (no cache): what a deploy produced
LOCATION_REPOSITORY = """
query LocationRepository($selector: RepositorySelector!) {
  repositoryOrError(repositorySelector: $selector) {
    __typename
    ... on Repository {
      name
      jobs { name }
      schedules { name cronSchedule executionTimezone defaultStatus scheduleState { status } pipelineName }
      assetNodes { assetKey { path } dependencyKeys { path } jobNames }
    }
    ... on Error { message }
  }
}
"""

ASSET_MATERIALIZATIONS = """
query AssetMaterializations($assetKey: AssetKeyInput!, $limit: Int) {
  assetOrError(assetKey: $assetKey) {
    __typename
    ... on Asset {
      key { path }
      hasDefinitionOrRecord
      assetMaterializations(limit: $limit) {
        runId
        timestamp
        partition
        stepKey
        metadataEntries {
          __typename
          label
          ... on IntMetadataEntry { intValue intRepr }
          ... on FloatMetadataEntry { floatValue }
          ... on TextMetadataEntry { text }
          ... on BoolMetadataEntry { boolValue }
          ... on JsonMetadataEntry { jsonString }
          ... on MarkdownMetadataEntry { mdStr }
          ... on PathMetadataEntry { path }
          ... on UrlMetadataEntry { url }
          ... on TimestampMetadataEntry { timestamp }
          ... on PipelineRunMetadataEntry { runId }
        }
      }
    }
    ... on Error { message }
  }
}
"""

DAEMON_HEALTH = """
query DaemonHealth {
  instance {
    daemonHealth {
      allDaemonStatuses {
        daemonType
        required
        healthy
        lastHeartbeatTime
        lastHeartbeatErrors { message }
      }
    }
  }
}
"""

VERSION = """
query Version { version }
"""

# -- maintenance: old runs, their events, the assets pipelines left behind -----------------------

OLD_RUN_IDS = """
query OldRunIds($filter: RunsFilter, $cursor: String, $limit: Int) {
  runsOrError(filter: $filter, cursor: $cursor, limit: $limit) {
    __typename
    ... on Runs { results { runId creationTime } }
    ... on Error { message }
  }
}
"""

RUN_EVENT_COUNT = """
query RunEventCount($runId: ID!, $afterCursor: String, $limit: Int) {
  logsForRun(runId: $runId, afterCursor: $afterCursor, limit: $limit) {
    __typename
    ... on EventConnection { cursor hasMore events { __typename } }
    ... on Error { message }
  }
}
"""

DELETE_RUN = """
mutation DeleteRun($runId: String!) {
  deleteRun(runId: $runId) {
    __typename
    ... on DeletePipelineRunSuccess { runId }
    ... on Error { message }
  }
}
"""

ASSETS_BY_PREFIX = """
query AssetsByPrefix($prefix: [String!], $cursor: String, $limit: Int) {
  assetsOrError(prefix: $prefix, cursor: $cursor, limit: $limit) {
    __typename
    ... on AssetConnection {
      cursor
      nodes {
        key { path }
        definition { id }
        assetMaterializations(limit: 1) {
          timestamp
          metadataEntries { __typename label ... on TextMetadataEntry { text } }
        }
      }
    }
    ... on Error { message }
  }
}
"""

WIPE_ASSETS = """
mutation WipeAssets($selectors: [PartitionsByAssetSelector!]!) {
  wipeAssets(assetPartitionRanges: $selectors) {
    __typename
    ... on AssetWipeSuccess { assetPartitionRanges { assetKey { path } } }
    ... on Error { message }
  }
}
"""

ALL_DOCUMENTS = {
    "OLD_RUN_IDS": OLD_RUN_IDS,
    "RUN_EVENT_COUNT": RUN_EVENT_COUNT,
    "DELETE_RUN": DELETE_RUN,
    "ASSETS_BY_PREFIX": ASSETS_BY_PREFIX,
    "WIPE_ASSETS": WIPE_ASSETS,
    "LAUNCH_RUN": LAUNCH_RUN,
    "GET_RUN": GET_RUN,
    "LIST_RUNS": LIST_RUNS,
    "RUN_LOGS": RUN_LOGS,
    "TERMINATE_RUN": TERMINATE_RUN,
    "RELOAD_LOCATION": RELOAD_LOCATION,
    "GET_SCHEDULE": GET_SCHEDULE,
    "START_SCHEDULE": START_SCHEDULE,
    "STOP_SCHEDULE": STOP_SCHEDULE,
    "GET_SENSOR": GET_SENSOR,
    "START_SENSOR": START_SENSOR,
    "STOP_SENSOR": STOP_SENSOR,
    "WORKSPACE_INDEX": WORKSPACE_INDEX,
    "CODE_LOCATIONS": CODE_LOCATIONS,
    "ASSET_MATERIALIZATIONS": ASSET_MATERIALIZATIONS,
    "LIST_RUNS_WITH_METADATA": LIST_RUNS_WITH_METADATA,
    "LIST_RUN_IDS": LIST_RUN_IDS,
    "LOCATION_REPOSITORY": LOCATION_REPOSITORY,
    "DAEMON_HEALTH": DAEMON_HEALTH,
    "VERSION": VERSION,
}
