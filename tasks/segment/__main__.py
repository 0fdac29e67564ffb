from tasks.segment.task import main

if __name__ == "__main__":
    main()
